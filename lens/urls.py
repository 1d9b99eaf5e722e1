from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from lens import views
from provisioning.api import CourseTemplatesView, WorkspaceViewSet

router = DefaultRouter()
router.register("workspaces", WorkspaceViewSet, basename="api-workspace")

urlpatterns = [
    path("", views.home, name="home"),
    path("account/api-token/", views.api_token, name="api-token"),
    path("", include("provisioning.urls")),
    path("", include("billing.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include(router.urls)),
    path("api/courses/<int:course_id>/templates/", CourseTemplatesView.as_view(),
         name="api-course-templates"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
