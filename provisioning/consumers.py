"""Websocket consumers: authorize in connect(), then join one group per object."""

from courses.consumers import FORBIDDEN, GroupConsumer
from courses.models import Membership
from provisioning.broadcast import course_group, member_group
from provisioning.course_page import course_page_may_view

__all__ = ["FORBIDDEN", "CoursePageConsumer", "MemberWorkspacesConsumer"]


class MemberWorkspacesConsumer(GroupConsumer):
    """Live workspace cards for one membership: only its own user may listen."""

    workspaces_update = GroupConsumer.relay
    # Other panels of the same dashboard (courses.live: inbox, help request).
    member_update = GroupConsumer.relay

    def group_for(self, kwargs):
        return member_group(kwargs["membership_id"])

    def may_listen(self, user, kwargs):
        return Membership.objects.active().filter(pk=kwargs["membership_id"], user=user).exists()


class CoursePageConsumer(GroupConsumer):
    """Live rows of the staff course page: only the course's staff may listen."""

    course_update = GroupConsumer.relay

    def group_for(self, kwargs):
        return course_group(kwargs["course_id"])

    def may_listen(self, user, kwargs):
        actor = (Membership.objects.active()
                 .filter(user=user, course_id=kwargs["course_id"]).first())
        return course_page_may_view(actor)
