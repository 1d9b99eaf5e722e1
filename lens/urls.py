from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from lens import api, course_views, views
from provisioning.api import CourseTemplatesView, WorkspaceViewSet

router = DefaultRouter()
router.register("workspaces", WorkspaceViewSet, basename="api-workspace")

urlpatterns = [
    path("", views.home, name="home"),
    path("account/api-token/", views.api_token, name="api-token"),
    path("courses/<int:course_id>/budget/", course_views.course_budget, name="course-budget"),
    path("courses/<int:course_id>/members/<int:membership_id>/budget/",
         course_views.member_budget, name="member-budget"),
    path("", include("provisioning.urls")),
    path("", include("billing.urls")),
    path("", include("courses.roster_urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include(router.urls)),
    path("api/courses/<int:course_id>/templates/", CourseTemplatesView.as_view(),
         name="api-course-templates"),
    path("api/members/<int:membership_id>/budget/", api.MemberBudgetView.as_view(),
         name="api-member-budget"),
    path("api/members/<int:membership_id>/ledger/", api.MemberLedgerView.as_view(),
         name="api-member-ledger"),
    path("api/members/<int:membership_id>/cap/", api.MemberCapView.as_view(),
         name="api-member-cap"),
    path("api/members/<int:membership_id>/adjustments/", api.MemberAdjustmentView.as_view(),
         name="api-member-adjustments"),
    path("api/courses/<int:course_id>/templates/<slug:slug>/estimate/",
         api.TemplateEstimateView.as_view(), name="api-template-estimate"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
