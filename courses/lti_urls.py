"""LTI 1.3 routes, included from lens/urls.py under lti/."""

from django.urls import path

from courses import lti_views

urlpatterns = [
    path("login/", lti_views.login_initiation, name="lti-login"),
    path("launch/", lti_views.launch, name="lti-launch"),
    path("jwks/", lti_views.jwks, name="lti-jwks"),
    path("canvas.json", lti_views.canvas_config, name="lti-canvas-config"),
    path("contexts/<int:context_id>/", lti_views.context_page, name="lti-context"),
    path("courses/<int:course_id>/", lti_views.course_page, name="lti-course"),
    path("courses/<int:course_id>/sync/", lti_views.course_sync, name="lti-course-sync"),
]
