"""Per-object access to workspaces, shared by pages, the API and consumers.

Not visible → 404 (we do not confirm that someone else's workspace exists);
visible but not allowed → 403.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404

from courses.models import Membership
from courses.policy import Action, membership_may
from provisioning.models import Workspace

_VIEW_ALL_ROLES = [Membership.Role.INSTRUCTOR, Membership.Role.HEAD_TA, Membership.Role.TA]


def workspace_get_for(*, user, workspace_id: int, action: Action) -> Workspace:
    workspace = (Workspace.objects.select_related("owner__course", "template", "cloud_account")
                 .filter(pk=workspace_id).first())
    if workspace is None or not user.is_authenticated:
        raise Http404("No such workspace.")
    actor = (Membership.objects.active()
             .filter(user=user, course_id=workspace.owner.course_id).first())
    if not membership_may(actor=actor, action=Action.VIEW_WORKSPACE, owner=workspace.owner):
        raise Http404("No such workspace.")
    if not membership_may(actor=actor, action=action, owner=workspace.owner):
        raise PermissionDenied("Your role in this course does not allow that.")
    return workspace


def workspaces_visible_to(user) -> QuerySet[Workspace]:
    """Own workspaces, plus every workspace of the courses where the user is staff."""
    if not user.is_authenticated:
        return Workspace.objects.none()
    mine = Membership.objects.active().filter(user=user)
    staff_courses = mine.filter(role__in=_VIEW_ALL_ROLES).values("course_id")
    return Workspace.objects.filter(
        Q(owner__in=mine.values("pk")) | Q(owner__course_id__in=staff_courses)
    )
