"""Celery tasks for courses: thin and idempotent, taking ids."""

from __future__ import annotations

import logging

from celery import shared_task

from courses import approvals, inbox, lti, roster, workshops

log = logging.getLogger(__name__)

MAX_RETRIES = 5


@shared_task(bind=True, max_retries=MAX_RETRIES)
def lti_roster_sync_task(self, context_id: int) -> None:
    """Sync one LMS course's roster; safe to run twice (the sync only adds and raises)."""
    try:
        lti.lti_roster_sync(context_id=context_id)
    except lti.LtiTransientError as exc:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=min(2 ** self.request.retries * 5, 300)) from exc
        lti.lti_roster_sync_fail(context_id=context_id, reason=str(exc))
    except lti.LtiError as exc:
        log.warning("LTI roster sync of context %s refused: %s", context_id, exc)
        lti.lti_roster_sync_fail(context_id=context_id, reason=str(exc))


def _mail_or_retry(task, send, **ids) -> None:
    """Send one email by its service; when SMTP is down or refusing, retry later (backing off)."""
    try:
        send(**ids)
    except OSError as exc:
        raise task.retry(exc=exc, countdown=min(2 ** task.request.retries * 30, 600)) from exc


@shared_task(bind=True, max_retries=5)
def membership_invitation_send_task(self, membership_id: int) -> None:
    """Email a member's latest invitation; a second run sends nothing."""
    _mail_or_retry(self, roster.invitation_send, membership_id=membership_id)


@shared_task
def workshops_end_task() -> int:
    """Revoke participants of workshops whose access has ended (beat, every minute).

    Safe to run twice or concurrently: revocations are compare-and-swaps. Until
    the term-end close exists, this is what stops a workshop's access.
    """
    return workshops.workshops_end_due()


@shared_task(bind=True, max_retries=5)
def message_email_send_task(self, message_id: int) -> None:
    """Email a staff message to its student; a second run sends nothing."""
    _mail_or_retry(self, inbox.message_email_send, message_id=message_id)


@shared_task(bind=True, max_retries=5)
def approval_notify_task(self, approval_id: int) -> None:
    """Email a member their request's outcome; a second run sends nothing."""
    _mail_or_retry(self, approvals.approval_notify, approval_id=approval_id)


@shared_task(bind=True, max_retries=5)
def approval_staff_notify_task(self, approval_id: int) -> None:
    """Tell the course's deciders about a new request; a second run sends nothing."""
    _mail_or_retry(self, approvals.approval_staff_notify, approval_id=approval_id)


@shared_task
def approvals_expire_task() -> int:
    """Approvals past their expiry stop applying for good (beat, every minute)."""
    return approvals.approvals_expire()
