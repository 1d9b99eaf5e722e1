from django.urls import path

from courses.consumers import HelpQueueConsumer

websocket_urlpatterns = [
    path("ws/courses/<int:course_id>/help/", HelpQueueConsumer.as_asgi()),
]
