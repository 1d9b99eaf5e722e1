"""Websocket consumer for the help queue: authorize in connect(), then join the group."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from courses.live import help_group
from courses.models import Membership
from courses.policy import Action, membership_may

FORBIDDEN = 4403  # "not allowed", in the application range (4000-4999)


class HelpQueueConsumer(AsyncWebsocketConsumer):
    """The course's waiting help requests, live: only its staff may listen."""

    async def connect(self):
        course_id = self.scope["url_route"]["kwargs"]["course_id"]
        if not await self._may_listen(course_id):
            await self.close(code=FORBIDDEN)
            return
        self.group = help_group(course_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def help_update(self, event):
        await self.send(text_data=event["html"])

    @database_sync_to_async
    def _may_listen(self, course_id: int) -> bool:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return False
        actor = Membership.objects.active().filter(user=user, course_id=course_id).first()
        return membership_may(actor=actor, action=Action.VIEW_HELP_QUEUE)
