"""Celery tasks for courses: thin, idempotent, taking ids."""

from celery import shared_task

from courses import roster


@shared_task(bind=True, max_retries=5)
def membership_invitation_send_task(self, membership_id: int) -> None:
    """Email a member's latest invitation; a second run sends nothing."""
    try:
        roster.invitation_send(membership_id=membership_id)
    except OSError as exc:  # SMTP down or refusing for now
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries * 30, 600)) from exc
