"""Websocket consumers: authorize in connect(), then join one group per object."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from courses.models import Membership
from provisioning.broadcast import course_group, member_group
from provisioning.course_page import course_page_may_view

# Close code for "not allowed", in the application range (4000-4999).
FORBIDDEN = 4403


class MemberWorkspacesConsumer(AsyncWebsocketConsumer):
    """Live workspace cards for one membership: only its own user may listen."""

    async def connect(self):
        membership_id = self.scope["url_route"]["kwargs"]["membership_id"]
        if not await self._may_listen(membership_id):
            await self.close(code=FORBIDDEN)
            return
        self.group = member_group(membership_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def workspaces_update(self, event):
        await self.send(text_data=event["html"])

    async def member_update(self, event):
        """Other panels of the same dashboard (courses.live: inbox, help request)."""
        await self.send(text_data=event["html"])

    @database_sync_to_async
    def _may_listen(self, membership_id: int) -> bool:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return False
        return Membership.objects.active().filter(pk=membership_id, user=user).exists()


class CoursePageConsumer(AsyncWebsocketConsumer):
    """Live rows of the staff course page: only the course's staff may listen."""

    async def connect(self):
        course_id = self.scope["url_route"]["kwargs"]["course_id"]
        if not await self._may_listen(course_id):
            await self.close(code=FORBIDDEN)
            return
        self.group = course_group(course_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def course_update(self, event):
        await self.send(text_data=event["html"])

    @database_sync_to_async
    def _may_listen(self, course_id: int) -> bool:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return False
        actor = Membership.objects.active().filter(user=user, course_id=course_id).first()
        return course_page_may_view(actor)
