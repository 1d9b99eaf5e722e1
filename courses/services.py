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
