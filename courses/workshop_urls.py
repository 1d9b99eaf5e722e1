"""Workshop pages: joining with a code, and the instructor's code page."""

from django.urls import path

from courses import workshop_views as views

urlpatterns = [
    path("join/", views.workshop_join, name="workshop-join"),
    path("w/<str:code>/", views.workshop_join, name="workshop-join-code"),
    path("courses/<int:course_id>/workshop/", views.workshop_page, name="workshop-page"),
    path("courses/<int:course_id>/workshop/code/", views.workshop_code_regenerate,
         name="workshop-code-regenerate"),
]
