"""Websocket consumers: authorize in connect(), then join one group per object.

`GroupConsumer` is the shape every live page shares (provisioning's consumers
use it too); a subclass says which group a URL means and who may listen.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from courses.live import help_group
from courses.models import Membership
from courses.policy import Action, membership_may

FORBIDDEN = 4403  # "not allowed", in the application range (4000-4999)


class GroupConsumer(AsyncWebsocketConsumer):
    """Checks the listener in connect(), joins one group, relays rendered fragments."""

    def group_for(self, kwargs: dict) -> str:
        raise NotImplementedError

    def may_listen(self, user, kwargs: dict) -> bool:
        """Runs in a thread (database access); `user` is signed in."""
        raise NotImplementedError

    async def connect(self):
        kwargs = self.scope["url_route"]["kwargs"]
        if not await self._may_listen(kwargs):
            await self.close(code=FORBIDDEN)
            return
        self.group = self.group_for(kwargs)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def relay(self, event):
        await self.send(text_data=event["html"])

    @database_sync_to_async
    def _may_listen(self, kwargs: dict) -> bool:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return False
        return self.may_listen(user, kwargs)


class HelpQueueConsumer(GroupConsumer):
    """The course's waiting help requests, live: only its staff may listen."""

    help_update = GroupConsumer.relay

    def group_for(self, kwargs):
        return help_group(kwargs["course_id"])

    def may_listen(self, user, kwargs):
        actor = (Membership.objects.active()
                 .filter(user=user, course_id=kwargs["course_id"]).first())
        return membership_may(actor=actor, action=Action.VIEW_HELP_QUEUE)
