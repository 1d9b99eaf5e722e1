"""Enforcement: stop a member's machines the moment their money runs out.

Whenever a member's running set changes we meter them, work out when their
spend will reach the cap (or today's cap) at the current burn rate, and
schedule a check for that moment, a few seconds early to cover the time AWS
takes to stop. The one-minute sweep repeats the same check for everyone who
is running: a safety net, never the margin.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from billing import alerts, ledger
from billing.guard import day_start
from courses.models import Membership
from provisioning import metering
from provisioning.models import BudgetWatch, Workspace
from provisioning.states import State

_COMPUTE_BILLED = {State.RUNNING, State.HIBERNATING}
_WATCHED = {State.PENDING, State.RUNNING, State.HIBERNATING}
_TOLERANCE = timedelta(seconds=1)


@dataclass(frozen=True)
class Verdict:
    stop_reason: str  # "" while there is money left
    check_at: datetime | None  # when the money runs out at the current rate


def member_verdict(*, membership: Membership, workspaces: list[Workspace],
                   now: datetime) -> Verdict:
    """Decide from metered spend whether to stop now, or when to look again.

    The cap must cover what was spent plus the disks until the end of term
    (set aside in advance, so a stop for storage can never come too late);
    machines may burn what is left of it. With a fixed term end the disks'
    running cost only moves money from "set aside" to "spent", so it does not
    bring the stop nearer; a daily cap counts everything spent today.
    """
    lead = timedelta(seconds=settings.LENS_STOP_LEAD_SECONDS)
    compute = sum((w.compute_usd_per_hour for w in workspaces if w.state in _COMPUTE_BILLED),
                  Decimal(0))
    if compute == 0:
        return Verdict("", None)
    storage = metering.storage_usd_per_hour_of(workspaces)
    _, fixed_horizon = ledger.storage_horizon(membership.course, now)
    reserved = ledger.storage_reserved(course=membership.course, usd_per_hour=storage, now=now)
    # A fresh start is billed its first minute up front; that money is already in
    # spend but buys time still ahead, so it does not bring the stop forward.
    prepaid = sum((ledger.cost_of(usd_per_hour=w.compute_usd_per_hour,
                                  seconds=(w.state_changed_at + metering.MINIMUM_RUN - now)
                                  .total_seconds())
                   for w in workspaces if w.state == State.RUNNING
                   and w.state_changed_at + metering.MINIMUM_RUN > now), Decimal(0))
    limits = [("budget", ledger.member_cap(membership) + prepaid - reserved
               - ledger.member_spend(membership_id=membership.pk),
               compute if fixed_horizon else compute + storage)]
    if membership.course.max_daily_cost:
        today = ledger.member_spend(membership_id=membership.pk,
                                    since=day_start(membership.course, now))
        limits.append(("daily_cap", membership.course.max_daily_cost + prepaid - today,
                       compute + storage))
    soonest: tuple[datetime, str] | None = None
    for reason, remaining, rate in limits:
        if remaining <= rate * Decimal(lead.total_seconds()) / 3600:
            return Verdict(reason, None)
        moment = now + timedelta(hours=float(remaining / rate)) - lead
        if moment <= now + _TOLERANCE:  # due now: a check a second later would be too late
            return Verdict(reason, None)
        if soonest is None or moment < soonest[0]:
            soonest = (moment, reason)
    return Verdict("", soonest[0] if soonest else None)


def member_budget_enforce(*, membership_id: int, now: datetime) -> Verdict:
    """Meter the member, stop their machines if the money is gone, else schedule the check."""
    from provisioning import services, tasks

    membership = Membership.objects.select_related("course").get(pk=membership_id)
    if membership.status == Membership.Status.REVOKED:
        # A machine that was still starting when its owner was revoked.
        services.member_workspaces_stop(membership_id=membership_id, actor=None,
                                        reason=Workspace.StopReason.REVOKED)
    workspaces = list(Workspace.objects.filter(owner_id=membership_id)
                      .exclude(state=State.ARCHIVED).select_related("owner"))
    metering.workspaces_meter(now=now, queryset=workspaces)
    verdict = member_verdict(membership=membership, workspaces=workspaces, now=now)
    compute_running = any(w.state in _COMPUTE_BILLED for w in workspaces)
    money = metering.member_money_get(membership, workspaces=workspaces, now=now)
    alerts.member_alerts_check(membership=membership, money=money,
                               storage_only=not compute_running,
                               stopped=verdict.stop_reason == "budget")
    if not compute_running:
        alerts.member_storage_notice(membership=membership, money=money)
    if verdict.stop_reason:
        # One batched stop; a workspace that changed meanwhile is left to the next check.
        services.workspaces_stop(workspaces=workspaces, actor=None, reason=verdict.stop_reason)
        BudgetWatch.objects.update_or_create(
            membership_id=membership_id,
            defaults={"token": uuid.uuid4(), "check_at": None, "reason": verdict.stop_reason})
        return verdict
    watch, _ = BudgetWatch.objects.get_or_create(membership_id=membership_id)
    unchanged = (watch.check_at is not None and verdict.check_at is not None
                 and abs(watch.check_at - verdict.check_at) < timedelta(seconds=1))
    if unchanged or (watch.check_at is None and verdict.check_at is None):
        return verdict
    watch.token, watch.check_at, watch.reason = uuid.uuid4(), verdict.check_at, ""
    watch.save()
    if verdict.check_at is not None:
        token, eta = str(watch.token), verdict.check_at
        transaction.on_commit(lambda: tasks.member_budget_check_task.apply_async(
            (membership_id, token), eta=eta))
    return verdict


def members_running(*, now: datetime) -> list[int]:
    """Members with a machine that is, or is about to be, billed."""
    return list(Workspace.objects.filter(state__in=_WATCHED)
                .values_list("owner_id", flat=True).distinct())


def alerts_sweep(*, membership_ids: set[int]) -> None:
    """Alerts for members who are not running but still pay for disks, and for courses."""
    courses = set()
    for membership in Membership.objects.filter(pk__in=membership_ids).select_related("course"):
        money = metering.member_money_get(membership)
        alerts.member_alerts_check(membership=membership, money=money, storage_only=True)
        alerts.member_storage_notice(membership=membership, money=money)
        courses.add(membership.course)
    for course in courses | {m.course for m in Membership.objects.filter(
            pk__in=Workspace.objects.filter(state__in=_WATCHED).values("owner_id"))
            .select_related("course")}:
        alerts.course_alerts_check(course=course)
