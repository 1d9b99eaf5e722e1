from django.urls import path

from provisioning.consumers import CoursePageConsumer, MemberWorkspacesConsumer

websocket_urlpatterns = [
    path("ws/members/<int:membership_id>/", MemberWorkspacesConsumer.as_asgi()),
    path("ws/courses/<int:course_id>/", CoursePageConsumer.as_asgi()),
]
