"""Services for people and policy (called by views, the API and other apps)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from courses.models import Membership


def membership_claim_invitations(*, user) -> int:
    """Attach the invitations sent to this user's email and make them active.

    Called at every sign-in, so a person invited after creating their account
    joins the course the next time they sign in. Revoked memberships stay
    revoked. Returns how many memberships were claimed.
    """
    if not user.email:
        return 0
    with transaction.atomic():
        return (
            Membership.objects.filter(email__iexact=user.email)
            .filter(Q(user__isnull=True) | Q(user=user))
            .filter(status=Membership.Status.INVITED)
            .update(user=user, status=Membership.Status.ACTIVE)
        )


def membership_get_active(*, user, course_id: int) -> Membership | None:
    """The user's active membership in a course, or None."""
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.active()
        .select_related("course")
        .filter(user=user, course_id=course_id)
        .first()
    )


def membership_get_for(*, user, membership_id: int, action) -> Membership:
    """Another member's membership, if `user` may do `action` with what is theirs.

    Not in the same course or not allowed to see it → 404; may see but not
    do → 403. Shared by pages and the API.
    """
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    from courses.policy import Action, membership_may

    member = Membership.objects.select_related("course").filter(pk=membership_id).first()
    actor = (membership_get_active(user=user, course_id=member.course_id)
             if member is not None else None)
    if member is None or not membership_may(actor=actor, action=Action.VIEW_MONEY,
                                            owner=member):
        raise Http404("No such member.")
    if not membership_may(actor=actor, action=action, owner=member):
        raise PermissionDenied("Your role in this course does not allow that.")
    return member
