"""Billing's Celery tasks (reports). Thin: the work is in billing.reports."""

from celery import shared_task
from django.utils import timezone

from billing import reports


@shared_task(bind=True, max_retries=4, default_retry_delay=15 * 60)
def weekly_reports_send_task(self) -> int:
    """Fridays (beat): email the week's reports; returns how many were sent.

    Each delivery is recorded per recipient and week, so a retry after a mail
    failure, or a second run the same week, sends only what is missing.
    """
    summary = reports.weekly_reports_send(now=timezone.now())
    if summary.failed:
        raise self.retry()
    return summary.sent
