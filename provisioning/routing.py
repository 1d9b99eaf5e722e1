from django.urls import path

from provisioning.consumers import MemberWorkspacesConsumer

websocket_urlpatterns = [
    path("ws/members/<int:membership_id>/", MemberWorkspacesConsumer.as_asgi()),
]
