"""Capacity slots: a course's template with a capacity (a GPU pool) runs at most that
many workspaces at once; further launches wait in a first-come, first-served line
and are admitted by themselves when a slot frees.

A workspace holds a slot while its machine is on or on its way (`SLOT_STATES`);
a stopped one gave its slot back, so starting it again takes a slot or queues.
Every decision about a pool is made under a row lock on its ApprovedTemplate,
taken before the member's row (the order launch, start and admission share), so
twenty simultaneous clicks never put more machines in the pool than it has slots.
Lowering the capacity stops nobody: admission simply waits until holders leave.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from billing.guard import BudgetRefused, budget_authorize
from courses.models import Membership
from courses.policy import Action, membership_may
from provisioning.models import ApprovedTemplate, LaunchQueueEntry, Workspace
from provisioning.states import SLOT_STATES, State

log = logging.getLogger(__name__)

Pool = tuple[int, int]  # (course id, template id)
WAITING = LaunchQueueEntry.Status.WAITING


def is_gpu_type(instance_type: str) -> bool:
    """g4dn.xlarge, g5.2xlarge, p3.2xlarge…: the families whose slots users call GPU slots."""
    family = instance_type.split(".")[0]
    return len(family) > 1 and family[0] in "gp" and family[1].isdigit()


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class QueueStatus:
    """Where one queued workspace stands in its pool's line."""

    position: int
    capacity: int | None
    in_use: int
    gpu: bool

    @property
    def text(self) -> str:
        what = "a GPU slot" if self.gpu else "a slot"
        if self.capacity is None:
            pool = "the slot limit was lifted; starting shortly"
        else:
            used = "all" if self.in_use >= self.capacity else f"{self.in_use}"
            pool = f"{self.capacity} slot{'s' if self.capacity != 1 else ''}, {used} in use"
        return f"Waiting for {what} — you are {ordinal(self.position)} in line ({pool})"



# --- taking a slot -----------------------------------------------------------


def pool_holders_count(*, course_id: int, template_id: int) -> int:
    return Workspace.objects.filter(owner__course_id=course_id, template_id=template_id,
                                    state__in=SLOT_STATES).count()


def slot_acquire_or_enqueue(*, course_id: int, template_id: int) -> bool:
    """Decide whether a launch or start in this pool may go ahead now (False) or must
    wait in line (True). Templates without a capacity never queue.

    Locks the pool's row until the caller's transaction ends, so call it inside
    that transaction and before anything locks the member. A free slot is not
    taken while others wait: they were first.
    """
    pool = (ApprovedTemplate.objects.select_for_update(no_key=True)
            .filter(course_id=course_id, template_id=template_id, capacity__isnull=False)
            .only("pk", "capacity").first())
    if pool is None:
        return False
    if LaunchQueueEntry.objects.filter(course_id=course_id, template_id=template_id,
                                       status=WAITING).exists():
        return True
    return pool_holders_count(course_id=course_id, template_id=template_id) >= pool.capacity


@contextmanager
def guard_trial(trial: bool):
    """Run the budget guard for its verdict only: a queued launch must be affordable
    when it joins the line, but its hold is taken at admission, not while it waits."""
    if not trial:
        yield
        return
    savepoint = transaction.savepoint()
    try:
        yield
    finally:
        transaction.savepoint_rollback(savepoint)


def queue_join(*, workspace: Workspace, course_id: int) -> LaunchQueueEntry:
    """Put a queued workspace at the end of its pool's line (inside the caller's
    transaction, under the pool lock); the others waiting hear about it after commit."""
    from provisioning.broadcast import broadcast_queue_positions

    entry = LaunchQueueEntry.objects.create(course_id=course_id, template_id=workspace.template_id,
                                            membership_id=workspace.owner_id, workspace=workspace)
    template_id = workspace.template_id
    transaction.on_commit(lambda: broadcast_queue_positions(course_id=course_id,
                                                            template_id=template_id))
    return entry


# --- leaving the line ----------------------------------------------------------


def queue_leave(*, workspace: Workspace, actor) -> Workspace:
    """The owner (or staff who may operate it) takes a queued workspace out of line.

    A fresh launch that never ran is dropped (terminated, then archived, so its
    name is free again); a stopped workspace that was waiting to start goes back
    to stopped with its disks.
    """
    from provisioning.services import TransitionNotAllowed, workspace_transition

    if workspace.state != State.QUEUED:
        raise TransitionNotAllowed(f"Only a queued workspace can leave the queue; "
                                   f"{workspace.name} is "
                                   f"{workspace.get_state_display().lower()}.")
    with transaction.atomic():
        LaunchQueueEntry.objects.filter(workspace=workspace, status=WAITING).update(
            status=LaunchQueueEntry.Status.CANCELLED, closed_at=timezone.now(),
            reason="left the queue")
        if workspace.instance_id:
            workspace_transition(workspace=workspace, to=State.STOPPED, actor=actor,
                                 reason="left the queue")
        else:
            workspace_transition(workspace=workspace, to=State.TERMINATED, actor=actor,
                                 reason="left the queue")
            workspace_transition(workspace=workspace, to=State.ARCHIVED, actor=actor,
                                 reason="left the queue before it launched")
    return workspace


# --- admission -----------------------------------------------------------------


def transition_hook(*, workspace: Workspace, current: str, to: str) -> None:
    """Called by workspace_transition inside its transaction: when a workspace gives a
    slot back or leaves a line, its pool admits the next in line after commit.

    Templates without capacity or waiters cost one query after commit and nothing more.
    """
    if to in SLOT_STATES or (current not in SLOT_STATES and current != State.QUEUED):
        return
    owner_id, template_id = workspace.owner_id, workspace.template_id

    def admit() -> None:
        from provisioning import tasks

        limited = ApprovedTemplate.objects.filter(course_id=OuterRef("course_id"),
                                                  template_id=template_id,
                                                  capacity__isnull=False)
        waiting = LaunchQueueEntry.objects.filter(course_id=OuterRef("course_id"),
                                                  template_id=template_id, status=WAITING)
        course_id = (Membership.objects.filter(pk=owner_id)
                     .filter(Exists(limited) | Exists(waiting))
                     .values_list("course_id", flat=True).first())
        if course_id is not None:
            tasks.slots_admit_task.delay(course_id, template_id)

    transaction.on_commit(admit)


def _entry_close(entry: LaunchQueueEntry, status: str, reason: str, now: datetime) -> None:
    entry.status, entry.reason, entry.closed_at = status, reason[:500], now
    if status == LaunchQueueEntry.Status.ADMITTED:
        entry.admitted_at = now
    entry.save(update_fields=["status", "reason", "closed_at", "admitted_at"])


def _skip(entry: LaunchQueueEntry, reason: str, now: datetime) -> None:
    """Its turn came but it cannot start: say why on the card and let the next one go."""
    from provisioning.services import workspace_transition

    _entry_close(entry, LaunchQueueEntry.Status.SKIPPED, reason, now)
    workspace = entry.workspace
    message = f"Your turn for a slot came, but Lens could not start {workspace.name}: {reason}"
    workspace_transition(workspace=workspace,
                         to=State.STOPPED if workspace.instance_id else State.FAILED,
                         reason="skipped in the queue", failure_reason=message)


def _admit_next(*, course_id: int, template_id: int) -> int | None:
    """Admit or skip the head of the line if a slot is free, in one transaction.

    The admitted workspace's id; 0 when the head was skipped or dropped (try the
    next one); None when there is nothing more to do now (no one waiting, or every
    slot is taken).
    """
    from provisioning import tasks
    from provisioning.services import _member_metered, workspace_transition

    now = timezone.now()
    with transaction.atomic():
        pool = (ApprovedTemplate.objects.select_for_update(no_key=True)
                .filter(course_id=course_id, template_id=template_id)
                .select_related("template").first())
        entry = (LaunchQueueEntry.objects.filter(course_id=course_id, template_id=template_id,
                                                 status=WAITING)
                 .select_related("workspace__owner__course", "workspace__template")
                 .order_by("created_at", "pk").first())
        if entry is None:
            return None
        workspace = entry.workspace
        if workspace.state != State.QUEUED:  # terminated or changed some other way meanwhile
            _entry_close(entry, LaunchQueueEntry.Status.CANCELLED,
                         f"the workspace is {workspace.get_state_display().lower()}", now)
            return 0
        if pool is None:
            _skip(entry, f"{workspace.template.slug} is no longer approved for this course.",
                  now)
            return 0
        if pool.capacity is not None and \
                pool_holders_count(course_id=course_id, template_id=template_id) >= pool.capacity:
            return None
        member = workspace.owner
        if not membership_may(actor=member, action=Action.LAUNCH):
            _skip(entry, "your membership in this course is not active.", now)
            return 0
        # The same guard a launch or start runs, now that the machine would really start.
        disks = _member_metered(membership=member, now=now)
        if not workspace.instance_id:  # a fresh launch's disks are not counted while it waits
            disks += workspace.storage_usd_per_hour
        try:
            budget_authorize(membership=member, workspace_id=workspace.pk,
                             usd_per_hour=workspace.compute_usd_per_hour,
                             what=f"{workspace.name} ({workspace.instance_type})", at=now,
                             storage_usd_per_hour=disks)
        except BudgetRefused as refusal:
            _skip(entry, refusal.message, now)
            return 0
        _entry_close(entry, LaunchQueueEntry.Status.ADMITTED, "", now)
        workspace_id = workspace.pk
        if workspace.instance_id:
            workspace_transition(workspace=workspace, to=State.PENDING,
                                 reason="admitted to a slot: start", failure_reason="")
            transaction.on_commit(lambda: tasks.workspace_start_task.delay(workspace_id))
        else:
            workspace_transition(workspace=workspace, to=State.REQUESTED,
                                 reason="admitted to a slot: launch", failure_reason="")
            transaction.on_commit(lambda: tasks.workspace_launch_task.delay(workspace_id))
    return workspace_id


def slots_admit(*, course_id: int, template_id: int) -> list[int]:
    """Admit waiting workspaces in line order while the pool has free slots; returns
    the ids admitted. Idempotent: with no free slot or no one waiting it admits nobody.

    Everyone still waiting is told their new place afterwards.
    """
    from provisioning.broadcast import broadcast_queue_positions

    admitted: list[int] = []
    while (outcome := _admit_next(course_id=course_id, template_id=template_id)) is not None:
        if outcome:
            admitted.append(outcome)
    broadcast_queue_positions(course_id=course_id, template_id=template_id)
    return admitted


def pools_waiting() -> list[Pool]:
    """Pools with anyone in line, for the safety-net sweep."""
    return list(LaunchQueueEntry.objects.filter(status=WAITING)
                .values_list("course_id", "template_id").distinct().order_by())


# --- where everyone stands -------------------------------------------------------


def _pools_q(pools: Iterable[Pool], *, course_field: str = "course_id") -> Q:
    q = Q(pk__in=[])
    for course_id, template_id in pools:
        q |= Q(**{course_field: course_id, "template_id": template_id})
    return q


def queue_statuses(*, pools: Iterable[Pool]) -> dict[int, tuple[int, QueueStatus]]:
    """For every waiting workspace in these pools: (owner id, its status), in three
    queries whatever the number of pools or people in line."""
    pools = set(pools)
    if not pools:
        return {}
    line = list(LaunchQueueEntry.objects.filter(_pools_q(pools), status=WAITING)
                .order_by("created_at", "pk")
                .values_list("course_id", "template_id", "workspace_id", "membership_id"))
    in_use = {(c, t): n for c, t, n in
              Workspace.objects.filter(_pools_q(pools, course_field="owner__course_id"),
                                       state__in=SLOT_STATES)
              .values_list("owner__course_id", "template_id").annotate(n=Count("pk"))
              .order_by()}
    limits = {(c, t): (cap, itype) for c, t, cap, itype in
              ApprovedTemplate.objects.filter(_pools_q(pools))
              .values_list("course_id", "template_id", "capacity", "template__instance_type")}
    positions: dict[Pool, int] = defaultdict(int)
    statuses = {}
    for course_id, template_id, workspace_id, membership_id in line:
        pool = (course_id, template_id)
        positions[pool] += 1
        capacity, itype = limits.get(pool, (None, ""))
        statuses[workspace_id] = (membership_id, QueueStatus(
            position=positions[pool], capacity=capacity, in_use=in_use.get(pool, 0),
            gpu=is_gpu_type(itype)))
    return statuses


def queue_status_attach(workspaces: list[Workspace]) -> None:
    """Give each queued workspace its `queue_status` for its card (no query if none is
    queued). The workspaces come with `owner` loaded."""
    queued = [w for w in workspaces if w.state == State.QUEUED]
    if not queued:
        return
    statuses = queue_statuses(pools={(w.owner.course_id, w.template_id) for w in queued})
    for w in queued:
        found = statuses.get(w.pk)
        w.queue_status = found[1] if found else None


# --- the staff view -------------------------------------------------------------


@dataclass(frozen=True)
class SlotHolder:
    workspace: Workspace
    since: datetime
    session_cost: Decimal


@dataclass(frozen=True)
class PoolView:
    approved: ApprovedTemplate
    holders: list[SlotHolder]
    line: list[LaunchQueueEntry]

    @property
    def in_use(self) -> int:
        return len(self.holders)

    @property
    def free(self) -> int:
        return max(self.approved.capacity - self.in_use, 0)

    @property
    def gpu(self) -> bool:
        return is_gpu_type(self.approved.template.instance_type)


def course_pools(*, course_id: int) -> list[PoolView]:
    """Every capacity template of the course with who holds its slots (since when, and
    what its machine has cost since) and who waits, in five queries in all."""
    from billing.models import LedgerEntry
    from provisioning.models import WorkspaceEvent

    approved = list(ApprovedTemplate.objects.filter(course_id=course_id, capacity__isnull=False)
                    .select_related("template").order_by("template__slug"))
    if not approved:
        return []
    template_ids = [a.template_id for a in approved]
    holders = list(Workspace.objects.filter(owner__course_id=course_id,
                                            template_id__in=template_ids,
                                            state__in=SLOT_STATES)
                   .select_related("owner__user").order_by("state_changed_at", "pk"))
    ids = [w.pk for w in holders]
    # When each took its slot: its latest step into a slot state from outside one.
    since: dict[int, datetime] = {}
    for workspace_id, at in (WorkspaceEvent.objects.filter(workspace_id__in=ids,
                                                           to_state__in=SLOT_STATES)
                             .exclude(from_state__in=SLOT_STATES)
                             .values_list("workspace_id", "at").order_by("at", "pk")):
        since[workspace_id] = at
    cost: dict[int, Decimal] = defaultdict(Decimal)
    earliest = min(since.values(), default=None)
    if earliest is not None:
        for workspace_id, start, amount in (
                LedgerEntry.objects.filter(workspace_id__in=ids, kind=LedgerEntry.Kind.USAGE,
                                           meter=LedgerEntry.Meter.COMPUTE,
                                           interval_start__gte=earliest)
                .values_list("workspace_id", "interval_start", "amount")):
            if start >= since.get(workspace_id, start):
                cost[workspace_id] += amount
    line = list(LaunchQueueEntry.objects.filter(course_id=course_id, template_id__in=template_ids,
                                                status=WAITING)
                .select_related("workspace", "membership__user").order_by("created_at", "pk"))
    by_template: dict[int, list] = defaultdict(list)
    for w in holders:
        by_template[w.template_id].append(SlotHolder(
            workspace=w, since=since.get(w.pk, w.state_changed_at), session_cost=cost[w.pk]))
    waiting: dict[int, list] = defaultdict(list)
    for entry in line:
        waiting[entry.template_id].append(entry)
    return [PoolView(approved=a, holders=by_template[a.template_id],
                     line=waiting[a.template_id]) for a in approved]
