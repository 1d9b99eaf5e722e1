"""Billing's Celery tasks (reports)."""

from celery import shared_task


@shared_task
def weekly_reports_send_task() -> int:
    """Placeholder until the weekly reports land: sends nothing."""
    return 0
