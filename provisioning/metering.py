"""Metering: turn a workspace's state history into usage lines in the ledger.

Compute is billed per second with a 60-second minimum for each start, while
the machine is running (and while it writes its memory out to hibernate).
Storage is billed per second for as long as the volumes exist, running or
stopped: from the moment the instance is created until it is terminated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from billing import ledger
from billing.models import LedgerEntry
from provisioning.models import Workspace, WorkspaceEvent
from provisioning.states import State

MINIMUM_RUN = timedelta(seconds=60)
_BILLED_COMPUTE = {State.RUNNING, State.HIBERNATING}
_VOLUMES_GONE = {State.TERMINATED, State.ARCHIVED}


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime | None  # None: still open


def compute_runs(events: list[WorkspaceEvent]) -> list[Interval]:
    """Stretches in which the machine was billed for compute."""
    runs, start = [], None
    for event in events:
        billed = event.to_state in _BILLED_COMPUTE
        if billed and start is None:
            start = event.at
        elif not billed and start is not None:
            runs.append(Interval(start, event.at))
            start = None
    if start is not None:
        runs.append(Interval(start, None))
    return runs


def storage_span(events: list[WorkspaceEvent]) -> Interval | None:
    """From the instance's creation (first `pending`) until termination."""
    start = next((e.at for e in events if e.to_state == State.PENDING), None)
    if start is None:
        return None
    end = next((e.at for e in events if e.to_state in _VOLUMES_GONE), None)
    return Interval(start, end)


def workspace_meter(*, workspace: Workspace, now: datetime,
                    events: list[WorkspaceEvent] | None = None,
                    billed: dict[tuple[int, str], tuple[datetime, datetime]] | None = None,
                    exact: bool = True) -> int:
    """Write the usage lines owed up to `now`; returns how many were written.

    `billed` (from `ledger.billed_until`) saves a query per run. With
    `exact=False` (the one-minute sweep) an open storage span is billed only
    once a chunk has built up: disks cost fractions of a cent a minute, and a
    line per disk per minute would be most of the ledger. Everything that
    decides about money (the guard, the budget checks) meters exactly.
    """
    if events is None:
        events = list(workspace.events.order_by("at", "pk"))
    if billed is None:
        billed = ledger.billed_until(workspace_ids=[workspace.pk])
    owner = workspace.owner
    written = 0
    with transaction.atomic():  # all of a workspace's lines or none: runs are billed in order
        latest = billed.get((workspace.pk, LedgerEntry.Meter.COMPUTE))
        runs = compute_runs(events)
        for n, run in enumerate(runs):
            through = None
            if latest is not None and latest[0] >= run.start:
                if n + 1 < len(runs) and latest[0] >= runs[n + 1].start:
                    continue  # a later run is billed, so this one was billed to its end
                through = latest[1]
            line = ledger.usage_cover(
                membership_id=owner.pk, course_id=owner.course_id, workspace_id=workspace.pk,
                meter=LedgerEntry.Meter.COMPUTE, run_start=run.start,
                covered_until=max(run.end or now, run.start + MINIMUM_RUN),
                usd_per_hour=workspace.compute_usd_per_hour, billed_through=through)
            written += line is not None
        span = storage_span(events)
        if span is not None and workspace.storage_usd_per_hour:
            latest = billed.get((workspace.pk, LedgerEntry.Meter.STORAGE))
            through = latest[1] if latest is not None and latest[0] >= span.start else None
            end = span.end or now
            chunk = timedelta(minutes=settings.LENS_STORAGE_LINE_MINUTES)
            if exact or span.end is not None or end - (through or span.start) >= chunk:
                line = ledger.usage_cover(
                    membership_id=owner.pk, course_id=owner.course_id,
                    workspace_id=workspace.pk, meter=LedgerEntry.Meter.STORAGE,
                    run_start=span.start, covered_until=end,
                    usd_per_hour=workspace.storage_usd_per_hour, billed_through=through)
                written += line is not None
    return written


def workspaces_to_meter(*, now: datetime):
    """Every workspace that may still owe something.

    Launched at some point, not archived, and not terminated more than a day
    ago (by then its last line has long been written).
    """
    return (Workspace.objects.exclude(state=State.ARCHIVED)
            .exclude(instance_id="", home_volume_id="")
            .exclude(state=State.TERMINATED, state_changed_at__lt=now - timedelta(days=1))
            .select_related("owner"))


def workspaces_meter(*, now: datetime, queryset=None, exact: bool = True) -> int:
    """Meter many workspaces, reading their events and billing marks in two queries."""
    workspaces = list(queryset if queryset is not None else workspaces_to_meter(now=now))
    events: dict[int, list[WorkspaceEvent]] = {w.pk: [] for w in workspaces}
    for event in WorkspaceEvent.objects.filter(workspace_id__in=events).order_by("at", "pk"):
        events[event.workspace_id].append(event)
    billed = ledger.billed_until(workspace_ids=events)
    return sum(workspace_meter(workspace=w, now=now, events=events[w.pk], billed=billed,
                               exact=exact) for w in workspaces)


def has_volumes(workspace: Workspace) -> bool:
    """Its disks exist (or are about to: a requested launch), so they cost money."""
    if workspace.state in _VOLUMES_GONE:
        return False
    # A home volume outlives its machine (a spot machine AWS took back): still billed.
    return (workspace.state == State.REQUESTED or bool(workspace.instance_id)
            or bool(workspace.home_volume_id))


def storage_usd_per_hour_of(workspaces) -> Decimal:
    """What a member's existing disks cost per hour, from workspaces already loaded."""
    return sum((w.storage_usd_per_hour for w in workspaces if has_volumes(w)), Decimal(0))


def member_money_get(membership, *, workspaces=None, now: datetime | None = None):
    """The member's budget, with their disks set aside to the end of term."""
    if workspaces is None:
        workspaces = list(Workspace.objects.filter(owner_id=membership.pk)
                          .exclude(state__in=_VOLUMES_GONE)
                          .only("state", "instance_id", "home_volume_id",
                                "storage_usd_per_hour"))
    return ledger.member_money(membership, now=now,
                               storage_usd_per_hour=storage_usd_per_hour_of(workspaces))
