from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from courses.adapters import oidc_callback
from lens import api, course_api, course_views, setup_views, views
from provisioning.api import CourseTemplatesView, WorkspaceViewSet
from provisioning.key_api import KeyGenerateView, KeyView

router = DefaultRouter()
router.register("workspaces", WorkspaceViewSet, basename="api-workspace")
router.register("courses", course_api.CourseViewSet, basename="api-course")

urlpatterns = [
    path("", views.home, name="home"),
    path("courses/<int:course_id>/notices/dismiss/", views.notices_dismiss,
         name="notices-dismiss"),
    path("account/api-token/", views.api_token, name="api-token"),
    path("courses/new/", setup_views.course_new, name="course-new"),
    path("courses/new/summary/", setup_views.course_summary, name="course-new-summary"),
    path("courses/<int:course_id>/settings/", setup_views.course_settings,
         name="course-settings"),
    path("courses/<int:course_id>/settings/summary/", setup_views.course_summary,
         name="course-settings-summary"),
    path("courses/<int:course_id>/duplicate/", setup_views.course_duplicate,
         name="course-duplicate"),
    path("courses/<int:course_id>/", course_views.course_page, name="course-page"),
    path("courses/<int:course_id>/budget/", course_views.course_budget, name="course-budget"),
    path("courses/<int:course_id>/members/<int:membership_id>/budget/",
         course_views.member_budget, name="member-budget"),
    path("", include("provisioning.urls")),
    path("", include("billing.urls")),
    # Ahead of allauth's own route: the callback that always checks the id_token signature.
    path("accounts/oidc/<str:provider_id>/login/callback/", oidc_callback,
         name="openid_connect_callback"),
    path("", include("courses.roster_urls")),
    path("", include("courses.workshop_urls")),
    path("", include("courses.help_urls")),
    path("", include("courses.approval_urls")),
    path("accounts/", include("allauth.urls")),
    path("lti/", include("courses.lti_urls")),
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
    path("api/keys/", KeyView.as_view(), name="api-ssh-key"),
    path("api/keys/generate/", KeyGenerateView.as_view(), name="api-ssh-key-generate"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
