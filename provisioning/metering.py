"""Metering: turn a workspace's state history into usage lines in the ledger.

Compute is billed per second with a 60-second minimum for each start, while
the machine is running (and while it writes its memory out to hibernate).
Storage is billed per second for as long as the volumes exist, running or
stopped: from the moment the instance is created until it is terminated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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
                    events: list[WorkspaceEvent] | None = None) -> int:
    """Write the usage lines owed up to `now`; returns how many were written."""
    if events is None:
        events = list(workspace.events.order_by("at", "pk"))
    owner = workspace.owner
    written = 0
    for run in compute_runs(events):
        end = run.end or now
        line = ledger.usage_cover(
            membership_id=owner.pk, course_id=owner.course_id, workspace_id=workspace.pk,
            meter=LedgerEntry.Meter.COMPUTE, run_start=run.start,
            covered_until=max(end, run.start + MINIMUM_RUN),
            usd_per_hour=workspace.compute_usd_per_hour)
        written += line is not None
    span = storage_span(events)
    if span is not None and workspace.storage_usd_per_hour:
        line = ledger.usage_cover(
            membership_id=owner.pk, course_id=owner.course_id, workspace_id=workspace.pk,
            meter=LedgerEntry.Meter.STORAGE, run_start=span.start,
            covered_until=span.end or now,
            usd_per_hour=workspace.storage_usd_per_hour)
        written += line is not None
    return written


def workspaces_to_meter(*, now: datetime):
    """Every workspace that may still owe something.

    Launched at some point, not archived, and not terminated more than a day
    ago (by then its last line has long been written).
    """
    return (Workspace.objects.exclude(state=State.ARCHIVED).exclude(instance_id="")
            .exclude(state=State.TERMINATED, state_changed_at__lt=now - timedelta(days=1))
            .select_related("owner"))


def workspaces_meter(*, now: datetime, queryset=None) -> int:
    """Meter many workspaces, reading their events in one query."""
    workspaces = list(queryset if queryset is not None else workspaces_to_meter(now=now))
    events: dict[int, list[WorkspaceEvent]] = {w.pk: [] for w in workspaces}
    for event in WorkspaceEvent.objects.filter(workspace_id__in=events).order_by("at", "pk"):
        events[event.workspace_id].append(event)
    return sum(workspace_meter(workspace=w, now=now, events=events[w.pk]) for w in workspaces)
