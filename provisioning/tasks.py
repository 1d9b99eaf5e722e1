"""Celery tasks: thin, idempotent, taking ids. The work is in services."""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from provisioning import (
    aws,
    enforcement,
    idle,
    lifecycle,
    metering,
    ratelimit,
    services,
    slots,
)
from provisioning.broadcast import broadcast_member_workspaces
from provisioning.models import BudgetWatch, Workspace
from provisioning.states import SETTLING_STATES

log = logging.getLogger(__name__)

# Transient AWS errors (throttling, 5xx) are retried this many times, backing off
# exponentially from BACKOFF_BASE to BACKOFF_CAP seconds with jitter (about eight
# minutes in all) before the reason goes on the row. A task re-queued for its
# turn in Lens's own rate limit (ratelimit.RateLimited) counts as one retry too.
MAX_RETRIES = 12
BACKOFF_BASE = 1.0
BACKOFF_CAP = 90.0
# How long a machine may take to come up or go down before the card says so.
MAX_SETTLE_CHECKS = 120


def backoff(retries: int) -> float:
    """Seconds before try `retries + 1`: exponential, capped, half of it random.

    The jitter spreads out workers that AWS throttled at the same moment.
    """
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** retries)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _turn_wait(task, limited: ratelimit.RateLimited) -> None:
    """Come back when Lens's bucket has a token for us, or sleep if there is no queue."""
    if task.request.is_eager:  # tests and simulations: nothing else runs meanwhile
        time.sleep(limited.retry_after)
        return
    raise task.retry(exc=limited, countdown=limited.retry_after)


def _run(task, work, workspace_id: int) -> None:
    """Do `work`; retry transient AWS errors with backoff; record giving up."""
    while True:
        try:
            workspace = work(workspace_id=workspace_id)
            break
        except ratelimit.RateLimited as limited:
            if task.request.retries >= MAX_RETRIES:
                services.workspace_fail(workspace_id=workspace_id, reason=str(limited))
                return
            _turn_wait(task, limited)
        except aws.InstanceNotFound as exc:
            services.workspace_mark_gone(workspace_id=workspace_id, reason=f"AWS no longer has "
                                         f"the instance ({exc}).")
            return
        except aws.AwsError as exc:
            if exc.transient and task.request.retries < MAX_RETRIES:
                raise task.retry(exc=exc, countdown=backoff(task.request.retries)) from exc
            log.warning("workspace %s: giving up: %s", workspace_id, exc)
            services.workspace_fail(workspace_id=workspace_id, reason=str(exc))
            return
    if not services.workspace_is_settled(workspace):
        workspace_settle_task.apply_async((workspace_id, 1), countdown=settings.LENS_POLL_SECONDS)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def workspace_launch_task(self, workspace_id: int) -> None:
    _run(self, services.workspace_provision, workspace_id)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def workspace_stop_task(self, workspace_id: int) -> None:
    _run(self, services.workspace_stop_instance, workspace_id)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def workspaces_stop_task(self, workspace_ids: list[int]) -> None:
    """Stop several workspaces with batched StopInstances calls (budget, revoke, term end)."""
    try:
        batch = services.workspaces_stop_instances(workspace_ids=workspace_ids)
    except aws.AwsError as exc:
        if exc.transient and self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc
        log.warning("workspaces %s: giving up on stopping: %s", workspace_ids, exc)
        for workspace_id in workspace_ids:
            services.workspace_fail(workspace_id=workspace_id, reason=str(exc))
        return
    if batch.deferred:  # a fresh task: the ids sent already are not sent again
        if self.request.is_eager:
            time.sleep(batch.retry_after)
        workspaces_stop_task.apply_async((batch.deferred,), countdown=batch.retry_after)
    for workspace_id in batch.sent:
        workspace_settle_task.apply_async((workspace_id, 1), countdown=settings.LENS_POLL_SECONDS)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def workspace_start_task(self, workspace_id: int) -> None:
    _run(self, services.workspace_start_instance, workspace_id)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def workspace_hibernate_task(self, workspace_id: int) -> None:
    _run(self, lifecycle.workspace_hibernate_instance, workspace_id)


def _advance(task, advance, object_id: int, check: int, give_up) -> None:
    """Run one pass of a multi-step change; poll again while AWS is busy.

    Transient AWS errors retry with backoff; anything else is recorded by `give_up`.
    """
    try:
        finished = advance(object_id)
    except ratelimit.RateLimited as limited:  # our turn in the mutate bucket comes later
        task.apply_async((object_id, check), countdown=limited.retry_after)
        return
    except aws.AwsError as exc:
        if exc.transient and task.request.retries < MAX_RETRIES:
            raise task.retry(exc=exc, countdown=min(2 ** task.request.retries, 60)) from exc
        log.warning("%s %s: giving up: %s", task.name, object_id, exc)
        give_up(object_id, str(exc))
        return
    if finished:
        return
    if check >= MAX_SETTLE_CHECKS:
        give_up(object_id, "AWS did not finish in time; Lens will pick it up again shortly.")
        return
    task.apply_async((object_id, check + 1), countdown=settings.LENS_POLL_SECONDS)


def _terminate_give_up(workspace_id: int, reason: str) -> None:
    services.workspace_fail(workspace_id=workspace_id, reason=reason)


def _reset_give_up(reset_id: int, reason: str) -> None:
    lifecycle.workspace_reset_fail(reset_id=reset_id, reason=reason)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def workspace_terminate_task(self, workspace_id: int, check: int = 1) -> None:
    _advance(self, lambda pk: lifecycle.workspace_terminate_advance(workspace_id=pk),
             workspace_id, check, _terminate_give_up)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def workspace_reset_task(self, reset_id: int, check: int = 1) -> None:
    _advance(self, lambda pk: lifecycle.workspace_reset_advance(reset_id=pk),
             reset_id, check, _reset_give_up)


@shared_task
def backups_expire_task() -> int:
    """Hourly: delete reset and deletion backups past their keeping time."""
    return lifecycle.backups_expire(now=timezone.now())


@shared_task
def lifecycle_resume_task() -> int:
    """Safety net on beat: pick up resets and deletions whose worker died."""
    resets, deleting = lifecycle.lifecycle_stalled(now=timezone.now())
    for reset_id in resets:
        workspace_reset_task.delay(reset_id)
    for workspace_id in deleting:
        workspace_terminate_task.delay(workspace_id)
    return len(resets) + len(deleting)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def workspace_settle_task(self, workspace_id: int, check: int = 1, follow: bool = True) -> None:
    """Ask EC2 again until the workspace reaches a resting state (once, without `follow`)."""
    workspace = Workspace.objects.select_related("cloud_account").filter(pk=workspace_id).first()
    if services.workspace_is_settled(workspace) or not workspace.instance_id:
        return
    try:
        workspace = services.workspace_sync(workspace=workspace)
    except ratelimit.RateLimited:
        pass  # attaching the home volume waits its turn; the next check tries again
    except aws.InstanceNotFound as exc:
        services.workspace_mark_gone(workspace_id=workspace_id, reason=f"AWS no longer has the "
                                     f"instance ({exc}).")
        return
    except aws.AwsError as exc:
        if not exc.transient:
            services.workspace_fail(workspace_id=workspace_id, reason=str(exc))
            return
    if services.workspace_is_settled(workspace) or not follow:
        return
    if check >= MAX_SETTLE_CHECKS:
        services.workspace_fail(workspace_id=workspace_id,
                                reason="AWS did not finish the change in time; Lens will keep "
                                       "checking it at the next reconcile.")
        return
    workspace_settle_task.apply_async((workspace_id, check + 1),
                                      countdown=settings.LENS_POLL_SECONDS)


@shared_task
def workspaces_settle_sweep() -> int:
    """Safety net on beat: check once more every workspace caught between states.

    Each check is one-shot, so the sweep never piles up polling chains.
    """
    ids = list(Workspace.objects.filter(state__in=SETTLING_STATES)
               .exclude(instance_id="").values_list("pk", flat=True))
    for workspace_id in ids:
        workspace_settle_task.delay(workspace_id, follow=False)
    return len(ids)


# --- money -----------------------------------------------------------------


@shared_task
def member_budget_watch_task(membership_id: int) -> None:
    """The member's running set changed: meter them and reschedule their stop."""
    enforcement.member_budget_enforce(membership_id=membership_id, now=timezone.now())


@shared_task
def member_budget_check_task(membership_id: int, token: str) -> None:
    """The scheduled moment a member's money runs out; outdated schedules do nothing."""
    watch = BudgetWatch.objects.filter(membership_id=membership_id).first()
    if watch is None or str(watch.token) != token or watch.check_at is None:
        return
    now = timezone.now()
    if now < watch.check_at - timedelta(seconds=1):
        return  # delivered early (eager mode, clock skew): the sweep or a later check acts
    enforcement.member_budget_enforce(membership_id=membership_id, now=now)


@shared_task
def billing_sweep_task() -> int:
    """Every minute: meter everything, then check everyone who is running.

    The safety net behind the scheduled checks, and what keeps storage-only
    spend current for stopped workspaces.
    """
    now = timezone.now()
    metered = list(metering.workspaces_to_meter(now=now))
    metering.workspaces_meter(now=now, queryset=metered, exact=False)
    members = enforcement.members_running(now=now)
    for membership_id in members:
        enforcement.member_budget_enforce(membership_id=membership_id, now=now)
        broadcast_member_workspaces(membership_id=membership_id)  # the budget bar moves
    enforcement.alerts_sweep(membership_ids={w.owner_id for w in metered} - set(members))
    return len(members)


# --- idle auto-stop ------------------------------------------------------------


@shared_task
def idle_sweep_task(account_id: int | None = None) -> dict:
    """Every minute: warn about, and stop, machines nobody is using."""
    summary = idle.idle_sweep(account_id=account_id)
    return {"checked": summary.checked, "warned": len(summary.warned),
            "finished": len(summary.finished), "stopped": len(summary.stopped),
            "aws_calls": summary.aws_calls}


# --- capacity slots ----------------------------------------------------------


@shared_task
def slots_admit_task(course_id: int, template_id: int) -> int:
    """A slot may have freed (or the line changed): admit whoever is next, in order."""
    return len(slots.slots_admit(course_id=course_id, template_id=template_id))


@shared_task
def slots_admit_sweep() -> int:
    """Safety net on beat: pools with people in line get another look (a capacity raised
    in settings, an admission task lost with a worker)."""
    pools = slots.pools_waiting()
    for course_id, template_id in pools:
        slots_admit_task.delay(course_id, template_id)
    return len(pools)


# --- reconcile ---------------------------------------------------------------


@shared_task
def reconcile_task() -> dict:
    """Every minute: fold AWS's view of every account into Lens.

    One run per account at a time (a Redis lock); an overlapping run skips it.
    """
    from provisioning import reconcile

    results = reconcile.reconcile_all()
    return {str(pk): (None if s is None else {"seen": s.seen, "changed": s.changed,
                                              "orphans": s.orphans, "adopted": s.adopted,
                                              "stopped": s.stopped, "calls": s.calls})
            for pk, s in results.items()}
