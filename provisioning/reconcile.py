"""Reconcile: fold what AWS says about Lens's machines back into Lens, every minute.

AWS is the source of truth for what a machine is doing. One paged
DescribeInstances by the Lens workspace tag (1,000 a page) lists every
machine Lens made; the fold compares each with its workspace and moves the
workspace through the state machine when they disagree: a machine stopped
or terminated in the console, a spot interruption, a launch whose task died
after RunInstances. A tagged machine no live workspace accounts for is an
orphan: recorded, staff told once, and stopped.

The decision (`fold_decide`) is a pure function of one workspace, its
instance and the time; `reconcile_account` reads everything it needs in a
constant number of queries and writes only where something changed, so a
reconcile with nothing to do makes no writes at all.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from courses.models import Course, Membership
from provisioning import aws, lifecycle
from provisioning.models import CloudAccount, OrphanInstance, Workspace
from provisioning.services import StaleState, TransitionError, workspace_transition
from provisioning.states import State

log = logging.getLogger(__name__)

# A workspace changed this recently may be mid-flight (a launch task between
# RunInstances and its database write, AWS not yet listing a new machine):
# the reconciler leaves it to its task until this much time has passed.
GRACE = timedelta(minutes=3)
# An orphan's last_seen is refreshed at most this often, so an idle reconcile writes nothing.
SEEN_REFRESH = timedelta(minutes=15)

# The Lens states the reconciler compares with AWS. Failed, terminated and
# archived workspaces are done: a live machine tagged with one is an orphan.
FOLDED_STATES = frozenset({State.REQUESTED, State.PENDING, State.RUNNING, State.STOPPING,
                           State.HIBERNATING, State.STOPPED, State.TERMINATING})
# A live machine tagged with a workspace in one of these is an orphan.
DONE_STATES = frozenset({State.FAILED, State.TERMINATED, State.ARCHIVED})
_GONE = frozenset({"shutting-down", "terminated"})
_UP = frozenset({"pending", "running"})
SPOT_TEXT = "AWS reclaimed the spot capacity"


@dataclass(frozen=True)
class Fold:
    """What to do about one workspace: states to pass through, and side work."""

    steps: tuple[State, ...] = ()
    reason: str = ""
    at: datetime | None = None  # when AWS made the change, if it says
    fields: dict = field(default_factory=dict)  # saved with the last step
    adopt: str = ""  # the instance id to record on the workspace first
    stop: bool = False  # ask AWS (again) to stop the machine
    relaunch: bool = False  # enqueue the launch task again: it died before RunInstances
    restart: bool = False  # enqueue the start task again: it died before StartInstances
    interrupted: str = ""  # a spot interruption: the machine's state ("stopped", "terminated")

    @property
    def changes_state(self) -> bool:
        return bool(self.steps)


NOTHING = Fold()


def _addresses(instance: aws.Instance) -> dict:
    return {"public_ip": instance.public_ip, "private_ip": instance.private_ip,
            "public_dns": instance.public_dns}


def _outside_text(instance: aws.TaggedInstance, what: str) -> str:
    detail = instance.state_reason or instance.state_transition_reason
    return f"{what} outside Lens" + (f" (AWS: {detail})" if detail else "")


def _terminated(workspace: Workspace, instance: aws.TaggedInstance | None) -> Fold:
    if instance is None:
        text = f"AWS no longer lists instance {workspace.instance_id}"
        at = None
    elif instance.is_spot_interruption:
        text, at = f"{SPOT_TEXT}: instance {instance.id} was terminated", instance.transition_at
    else:
        text, at = _outside_text(instance, f"Instance {instance.id} was terminated"), \
            instance.transition_at
    steps = (State.TERMINATED,) if workspace.state == State.TERMINATING else (
        State.TERMINATING, State.TERMINATED)
    fields = {"failure_reason": text, "public_ip": None, "public_dns": ""}
    if instance is not None and instance.is_spot_interruption:
        # Not the end of the workspace: it stops, keeps its home volume, and its next
        # Start launches a fresh machine (lifecycle.workspace_interrupted).
        return Fold(reason=text, at=at, interrupted="terminated")
    return Fold(steps=steps, reason=text, at=at, fields=fields)


def fold_decide(*, workspace: Workspace, instance: aws.TaggedInstance | None,
                now: datetime, grace: timedelta = GRACE) -> Fold:
    """How to bring one workspace in line with what AWS says about its machine.

    `instance` is the workspace's machine (by its recorded id, or for a launch
    that never recorded one, the machine tagged with the workspace), or None
    when AWS lists none.
    """
    state = State(workspace.state)
    settled = now - workspace.state_changed_at >= grace
    aws_state = instance.state if instance is not None else None
    if state not in FOLDED_STATES:
        return NOTHING

    if not workspace.instance_id:
        if state not in {State.REQUESTED, State.PENDING} or not settled:
            return NOTHING
        if instance is None or aws_state in _GONE:
            return Fold(relaunch=True) if state == State.REQUESTED else NOTHING
        # The launch task ran the machine and died before writing its id down.
        steps = (State.PENDING,) if state == State.REQUESTED else ()
        if aws_state == "running":
            steps += (State.RUNNING,)
        return Fold(steps=steps, adopt=instance.id, fields=_addresses(instance),
                    reason=f"adopted instance {instance.id} after its launch task died")

    if instance is None or aws_state in _GONE:
        if aws_state == "shutting-down" and state == State.TERMINATING:
            return NOTHING  # on its way, as asked
        if instance is None and not settled:
            return NOTHING  # AWS may not list a brand-new machine yet
        return _terminated(workspace, instance)

    if state == State.TERMINATING:
        return NOTHING  # the terminate task's business
    if state == State.PENDING:
        if aws_state == "running":
            return Fold(steps=(State.RUNNING,), reason="EC2 reports running",
                        fields=_addresses(instance))
        if aws_state == "stopped" and settled:
            return Fold(restart=True)
        return NOTHING
    if state == State.RUNNING:
        if aws_state not in {"stopping", "stopped"}:
            return NOTHING
        if instance.is_spot_interruption:
            stop_reason, text = Workspace.StopReason.SPOT, SPOT_TEXT
        else:
            stop_reason, text = Workspace.StopReason.OUTSIDE, _outside_text(instance, "Stopped")
        steps = (State.STOPPING,) + ((State.STOPPED,) if aws_state == "stopped" else ())
        fields = {"stop_reason": stop_reason}
        if aws_state == "stopped":
            fields.update(public_ip=None, public_dns="")
        return Fold(steps=steps, reason=text, at=instance.transition_at, fields=fields,
                    interrupted=aws_state if instance.is_spot_interruption else "")
    if state in {State.STOPPING, State.HIBERNATING}:
        if aws_state == "stopped":
            return Fold(steps=(State.STOPPED,), reason="EC2 reports stopped",
                        at=instance.transition_at, fields={"public_ip": None, "public_dns": ""})
        if aws_state == "running" and state == State.STOPPING and settled:
            return Fold(stop=True)  # the stop task died before StopInstances
        return NOTHING
    if state == State.STOPPED and aws_state in _UP:
        steps = (State.PENDING,) + ((State.RUNNING,) if aws_state == "running" else ())
        return Fold(steps=steps, reason=_outside_text(instance, "Started"),
                    fields={"stop_reason": "", **_addresses(instance)})
    return NOTHING


def _fold_apply(workspace: Workspace, fold: Fold) -> bool:
    """Make the fold's transitions in one transaction; False when someone else got there first."""
    try:
        with transaction.atomic():
            if fold.adopt and workspace.state != State.REQUESTED:
                Workspace.objects.filter(pk=workspace.pk, instance_id="").update(
                    instance_id=fold.adopt)
            for n, step in enumerate(fold.steps):
                fields = dict(fold.fields) if n == len(fold.steps) - 1 else {}
                if fold.adopt and step == State.PENDING:
                    fields["instance_id"] = fold.adopt
                workspace_transition(workspace=workspace, to=step, reason=fold.reason,
                                     at=fold.at, **fields)
    except StaleState:
        return False
    except TransitionError:
        log.exception("reconcile: workspace %s could not follow %s", workspace.pk, fold)
        return False
    return True


# --- orphans -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Orphan:
    instance: aws.TaggedInstance
    why: str


def _course_id(instance: aws.TaggedInstance) -> int | None:
    try:
        return int(instance.tags.get(aws.TAG_COURSE, ""))
    except ValueError:
        return None


def _orphans_record(*, account: CloudAccount, orphans: list[Orphan], adopted: list[Orphan],
                    stopping: set[str], now: datetime) -> list[OrphanInstance]:
    """Keep the orphan table in step with this listing; returns the newly found ones.

    One read; writes only for new orphans, changed ones, and ones gone since.
    """
    seen = {o.instance.id: o for o in orphans + adopted}
    records = {r.instance_id: r for r in OrphanInstance.objects.filter(cloud_account=account)
               .filter(Q(resolved_at__isnull=True) | Q(instance_id__in=list(seen)))}
    new, changed = [], []
    for instance_id, orphan in seen.items():
        instance = orphan.instance
        is_adopted = orphan in adopted
        action = (OrphanInstance.Action.ADOPTED if is_adopted
                  else OrphanInstance.Action.STOPPED if instance_id in stopping
                  else None)
        record = records.get(instance_id)
        if record is None:
            new.append(OrphanInstance(
                cloud_account=account, instance_id=instance_id,
                instance_type=instance.instance_type, aws_state=instance.state,
                tags=instance.tags, workspace_id=instance.workspace_id,
                course_id=_course_id(instance), why=orphan.why[:200],
                action=action or OrphanInstance.Action.NONE, first_seen=now, last_seen=now,
                resolved_at=now if is_adopted else None))
            continue
        fresh = (record.aws_state == instance.state and record.last_seen > now - SEEN_REFRESH
                 and (action is None or record.action == action)
                 and (record.resolved_at is None) != is_adopted)
        if fresh:
            continue
        record.aws_state, record.last_seen = instance.state, now
        if action is not None:
            record.action = action
        record.resolved_at = now if is_adopted else None
        changed.append(record)
    gone = [r for r in records.values() if r.instance_id not in seen and r.resolved_at is None]
    for record in gone:
        record.resolved_at = now
    if new:
        OrphanInstance.objects.bulk_create(new, ignore_conflicts=True)
    if changed or gone:
        OrphanInstance.objects.bulk_update(changed + gone,
                                           ["aws_state", "last_seen", "action", "resolved_at"])
    return [r for r in new if r.action != OrphanInstance.Action.ADOPTED]


def _staff_tell(records: list[OrphanInstance]) -> None:
    """One email per course the orphans' tags name, to its instructors and Lens's admins."""
    if not records:
        return
    admins = list(get_user_model().objects.filter(is_superuser=True, is_active=True)
                  .exclude(email="").values_list("email", flat=True))
    by_course: dict[int | None, list[OrphanInstance]] = defaultdict(list)
    for record in records:
        by_course[record.course_id].append(record)
    course_ids = [cid for cid in by_course if cid is not None]
    instructors: dict[int, list[str]] = defaultdict(list)
    for course_id, email in (Membership.objects.active()
                             .filter(course_id__in=course_ids, role=Membership.Role.INSTRUCTOR)
                             .exclude(email="").values_list("course_id", "email")):
        instructors[course_id].append(email)
    codes = dict(Course.objects.filter(pk__in=course_ids).values_list("pk", "code"))
    admin_url = f"{settings.SITE_URL}/admin/provisioning/orphaninstance/"
    for course_id, found in by_course.items():
        recipients = sorted(set(admins + instructors.get(course_id, [])))
        if not recipients:
            log.warning("orphan instances %s: nobody to tell", [r.instance_id for r in found])
            continue
        where = f" ({codes[course_id]})" if course_id in codes else ""
        count = f"{len(found)} machine{'s' if len(found) != 1 else ''}"
        lines = [f"Lens found {count} in AWS carrying its tags that no workspace accounts "
                 f"for{where}. Machines cost money whoever started them, so Lens stopped "
                 "the running ones; their disks remain until someone terminates them.", ""]
        for r in found:
            lines.append(f"- {r.instance_id} ({r.instance_type or 'unknown type'}): {r.why}; "
                         f"{r.get_action_display()}.")
        lines += ["", f"Review them in the Lens admin: {admin_url}"]
        try:
            send_mail(f"Lens stopped {count} no workspace accounts for{where}",
                      "\n".join(lines), settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception:  # the record stands; mail trouble is logged, not fatal
            log.exception("could not tell %s about orphan instances", recipients)


# --- the reconcile -----------------------------------------------------------------------


@dataclass
class ReconcileSummary:
    seen: int = 0  # tagged instances AWS listed
    changed: int = 0  # workspaces whose state moved
    orphans: int = 0  # orphans found this time
    adopted: int = 0  # workspaces given the machine their dead launch task made
    stopped: int = 0  # machines Lens asked AWS to stop
    relaunched: int = 0  # launch or start tasks enqueued again
    calls: int = 0  # AWS requests made
    changed_ids: list[int] = field(default_factory=list)


def _is_better(candidate: aws.TaggedInstance, current: aws.TaggedInstance | None) -> bool:
    """For a workspace with no recorded id: prefer a live machine, then the oldest."""
    if current is None:
        return True
    if (candidate.state in _GONE) != (current.state in _GONE):
        return current.state in _GONE
    far = datetime.max.replace(tzinfo=UTC)
    return (candidate.launch_time or far) < (current.launch_time or far)


def reconcile_account(*, account: CloudAccount, now: datetime | None = None,
                      page_size: int = 1000, grace: timedelta = GRACE) -> ReconcileSummary:
    """Fold one account's tagged machines into Lens; see the module docstring.

    No AWS call is made inside a transaction: list, then write, then stop.
    """
    from provisioning import tasks  # the task module imports this one

    now = now or timezone.now()
    summary = ReconcileSummary()
    listed_at = timezone.now()
    listing = aws.instances_describe_tagged(account, page_size=page_size)
    summary.calls += listing.calls
    summary.seen = len(listing.instances)
    by_id = {i.id: i for i in listing.instances}
    tagged: dict[int, list[aws.TaggedInstance]] = defaultdict(list)
    orphans: list[Orphan] = []
    for instance in listing.instances:
        if instance.workspace_id is None:
            if instance.state not in _GONE:
                tag = instance.tags.get(aws.TAG_WORKSPACE)
                orphans.append(Orphan(instance, f"its {aws.TAG_WORKSPACE} tag {tag!r} "
                                                "names no workspace"))
        else:
            tagged[instance.workspace_id].append(instance)

    workspaces = list(Workspace.objects.filter(cloud_account=account)
                      .filter(Q(state__in=FOLDED_STATES) | Q(pk__in=list(tagged))))
    known = {w.pk: w for w in workspaces}

    # Machines a workspace recorded but the tag listing lacks: terminated long ago, or
    # their tags were removed. Asked for by id, so a live untagged machine is not taken for gone.
    missing = [w.instance_id for w in workspaces
               if w.state in FOLDED_STATES and w.instance_id and w.instance_id not in by_id
               and w.state_changed_at <= listed_at]
    if missing:
        extra = aws.instances_describe_ids(account, missing)
        summary.calls += extra.calls
        by_id.update({i.id: i for i in extra.instances})

    claimed: set[str] = set()
    folds: list[tuple[Workspace, Fold]] = []
    for workspace in workspaces:
        if workspace.state not in FOLDED_STATES:
            continue
        if workspace.state_changed_at > listed_at:
            # Lens moved it after AWS was asked (a stop finishing, a start): the listing is
            # older than the row, and folding it would undo the change. Next minute's will do.
            claimed.add(workspace.instance_id)
            continue
        if workspace.instance_id:
            instance = by_id.get(workspace.instance_id)
        else:
            instance = None
            for candidate in tagged.get(workspace.pk, []):
                if _is_better(candidate, instance):
                    instance = candidate
        if instance is not None:
            claimed.add(instance.id)
        fold = fold_decide(workspace=workspace, instance=instance, now=now, grace=grace)
        if fold is not NOTHING:
            folds.append((workspace, fold))

    adopted: list[Orphan] = []
    for workspace_id, instances in tagged.items():
        workspace = known.get(workspace_id)
        for instance in instances:
            if instance.id in claimed or instance.state in _GONE:
                continue
            if workspace is None:
                why = f"workspace {workspace_id} does not exist"
            elif workspace.state not in FOLDED_STATES:
                if workspace.state not in DONE_STATES:
                    continue  # a state the reconciler does not fold (waiting in a queue)
                why = f"workspace {workspace_id} is {workspace.get_state_display().lower()}"
            elif (workspace.state in {State.REQUESTED, State.PENDING}
                  and not workspace.instance_id):
                continue  # a launch in flight: its task records the machine
            else:
                why = (f"a second machine for workspace {workspace_id}, "
                       f"which runs on {workspace.instance_id}")
            orphans.append(Orphan(instance, why))

    to_stop: list[str] = []
    for workspace, fold in folds:
        if fold.stop:
            to_stop.append(workspace.instance_id)
        elif fold.relaunch:
            transaction.on_commit(lambda pk=workspace.pk: tasks.workspace_launch_task.delay(pk))
            summary.relaunched += 1
        elif fold.restart:
            transaction.on_commit(lambda pk=workspace.pk: tasks.workspace_start_task.delay(pk))
            summary.relaunched += 1
        if fold.interrupted == "terminated":
            if lifecycle.workspace_interrupted(workspace_id=workspace.pk, reason=fold.reason,
                                               instance_state="terminated") is not None:
                summary.changed += 1
                summary.changed_ids.append(workspace.pk)
            continue
        if (fold.changes_state or fold.adopt) and _fold_apply(workspace, fold):
            if fold.interrupted:  # the student is told their spot machine was taken
                transaction.on_commit(lambda w=workspace: lifecycle.interruption_notify(w))
            summary.changed += bool(fold.changes_state)
            summary.changed_ids.append(workspace.pk)
            if fold.adopt:
                summary.adopted += 1
                adopted.append(Orphan(by_id[fold.adopt], fold.reason))

    orphan_running = [o.instance.id for o in orphans if o.instance.state == "running"]
    to_stop += orphan_running
    stopped = _instances_stop(account, to_stop, summary)
    new = _orphans_record(account=account, orphans=orphans, adopted=adopted,
                          stopping=set(orphan_running) & stopped, now=now)
    summary.orphans = len(new)
    _staff_tell(new)
    return summary


def _instances_stop(account: CloudAccount, instance_ids: list[str],
                    summary: ReconcileSummary) -> set[str]:
    """Stop in batches of up to 1,000; what AWS refuses or the bucket defers waits a minute."""
    if not instance_ids:
        return set()
    try:
        result = aws.instances_stop(account, instance_ids)
    except aws.AwsError as exc:
        log.warning("reconcile: could not stop %s: %s", instance_ids, exc)
        return set()
    summary.calls += result.calls
    for instance_id, exc in result.failed.items():
        log.warning("reconcile: could not stop %s: %s", instance_id, exc)
    summary.stopped = len(result.done)
    return set(result.done)


@contextmanager
def reconcile_lock(*, account_id: int, seconds: int = 300) -> Iterator[bool]:
    """Yield True to the one reconcile of this account that may run now, False to the rest.

    A Redis key with a timeout, so a worker killed mid-run frees it by itself.
    """
    key, token = f"lens:reconcile:{account_id}", uuid.uuid4().hex
    acquired = cache.add(key, token, seconds)
    try:
        yield acquired
    finally:
        if acquired and cache.get(key) == token:
            cache.delete(key)


def reconcile_all(*, now: datetime | None = None) -> dict[int, ReconcileSummary | None]:
    """Reconcile every cloud account; None for one another run is already reconciling."""
    results: dict[int, ReconcileSummary | None] = {}
    for account in CloudAccount.objects.order_by("pk"):
        with reconcile_lock(account_id=account.pk) as acquired:
            if not acquired:
                results[account.pk] = None
                continue
            try:
                results[account.pk] = reconcile_account(account=account, now=now)
            except aws.AwsError as exc:  # one unreachable account must not stop the others
                log.warning("reconcile of %s failed: %s", account, exc)
                results[account.pk] = None
    return results
