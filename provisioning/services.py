"""Workspace services: launch, stop, start, and folding AWS state back in.

Views, the API and Celery tasks call these; none of them change a
workspace's state any other way than through `workspace_transition`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import ledger
from billing.estimates import Estimate, estimate_make
from billing.guard import BudgetRefused, budget_authorize
from billing.services import (
    PriceNotFound,
    StoragePriceNotFound,
    price_get,
    price_map,
    storage_price_get,
)
from courses.models import Membership
from courses.policy import Action, membership_may
from provisioning import aws, slots
from provisioning.broadcast import broadcast_member_workspaces
from provisioning.models import ApprovedTemplate, CloudAccount, Workspace, WorkspaceEvent
from provisioning.ratelimit import RateLimited
from provisioning.states import ACTIVE_STATES, State, is_allowed

log = logging.getLogger(__name__)


class TransitionError(Exception):
    pass


class TransitionNotAllowed(TransitionError):
    """The state machine has no edge from the current state to the target."""


class StaleState(TransitionError):
    """Someone else changed the workspace first (the compare-and-swap lost)."""


class StartRefused(TransitionError):
    """The budget guard would not let a stopped workspace start again."""


class LaunchRefused(Exception):
    """A launch the policy does not allow; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 403, field: str | None = None):
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


# --- the state machine ----------------------------------------------------

# Leaving the billed path: the hold set aside at launch or start is given back.
# A reset places a new hold for its fresh machine, as a start does.
_HOLD_ENDS = {State.STOPPED, State.FAILED, State.TERMINATED, State.RESETTING}


def _session_close(workspace: Workspace, now) -> None:
    """Meter the run that just ended and keep its summary for the card."""
    from provisioning import metering

    events = list(workspace.events.order_by("at", "pk"))
    metering.workspace_meter(workspace=workspace, now=now, events=events)
    runs = metering.compute_runs(events)
    if not runs:
        return
    run = runs[-1]
    seconds = max(metering.MINIMUM_RUN, (run.end or now) - run.start).total_seconds()
    cost = ledger.workspace_compute_cost(workspace_id=workspace.pk, since=run.start)
    Workspace.objects.filter(pk=workspace.pk).update(last_session_seconds=int(seconds),
                                                     last_session_cost=cost)


def _watch_budget_on_commit(membership_id: int) -> None:
    """The running set changed: recompute when this member's money runs out."""
    from provisioning import tasks

    transaction.on_commit(lambda: tasks.member_budget_watch_task.delay(membership_id))



def workspace_transition(*, workspace: Workspace, to: State, actor=None, reason: str = "",
                         at: datetime | None = None, **fields) -> Workspace:
    """Move `workspace` from the state it was read in to `to`, or raise.

    Compare-and-swap on the state column, so of two concurrent changes from
    the same state exactly one wins and writes its event. `fields` are saved
    in the same UPDATE. Live listeners hear about it after commit. `at` dates
    a change that happened earlier (the reconciler folding in a stop AWS made
    at a known time, so metering ends the run there); it never goes before
    the previous change or after now.
    """
    current = workspace.state
    if not is_allowed(current, to):
        raise TransitionNotAllowed(f"A workspace cannot go from {current} to {to}.")
    now = timezone.now()
    if at is not None:
        now = min(now, max(at, workspace.state_changed_at))
    with transaction.atomic():
        changed = Workspace.objects.filter(pk=workspace.pk, state=current).update(
            state=to, state_changed_at=now, **fields
        )
        if not changed:
            raise StaleState(f"Workspace {workspace.pk} is no longer {current}.")
        WorkspaceEvent.objects.create(workspace=workspace, from_state=current, to_state=to,
                                      at=now, actor=actor, reason=reason[:200])
        if to in _HOLD_ENDS:
            ledger.holds_release(workspace_id=workspace.pk, note=f"workspace {to}")
        if to == State.STOPPED:
            _session_close(workspace, now)
        owner_id = workspace.owner_id
        transaction.on_commit(lambda: broadcast_member_workspaces(membership_id=owner_id))
        if State.RUNNING in (current, to) or to in _HOLD_ENDS:
            _watch_budget_on_commit(owner_id)
        slots.transition_hook(workspace=workspace, current=current, to=to)
    workspace.state, workspace.state_changed_at = to, now
    for name, value in fields.items():
        setattr(workspace, name, value)
    return workspace


# --- what a member may launch --------------------------------------------


@dataclass(frozen=True)
class TemplateOffer:
    """An approved template as a member sees it: with its price."""

    approved: ApprovedTemplate
    usd_per_hour: Decimal | None
    spot_usd_per_hour: Decimal | None = None  # only for templates that allow spot

    @property
    def template(self):
        return self.approved.template

    @property
    def usd_per_day(self) -> Decimal | None:
        return None if self.usd_per_hour is None else self.usd_per_hour * 24


def course_template_offers(*, course_ids: list[int]) -> dict[int, list[TemplateOffer]]:
    """Approved templates with prices for several courses, in two queries."""
    from courses.models import Course

    regions = dict(Course.objects.filter(pk__in=course_ids).values_list("pk", "region"))
    approved = list(ApprovedTemplate.objects.filter(course_id__in=course_ids)
                    .select_related("template").order_by("template__slug"))
    prices = price_map(keys={(regions[a.course_id], a.template.instance_type) for a in approved})
    spot_keys = {(regions[a.course_id], a.template.instance_type) for a in approved
                 if a.template.spot_allowed}
    spot = price_map(keys=spot_keys, market="spot") if spot_keys else {}
    offers: dict[int, list[TemplateOffer]] = {cid: [] for cid in course_ids}
    for a in approved:
        key = (regions[a.course_id], a.template.instance_type)
        price, spot_price = prices.get(key), spot.get(key)
        offers[a.course_id].append(
            TemplateOffer(approved=a, usd_per_hour=price.usd_per_hour if price else None,
                          spot_usd_per_hour=spot_price.usd_per_hour if spot_price else None)
        )
    return offers


def course_offer_get(*, membership: Membership, template_slug: str) -> TemplateOffer | None:
    offers = course_template_offers(course_ids=[membership.course_id])[membership.course_id]
    return next((o for o in offers if o.template.slug == template_slug), None)


def offer_estimate(*, offer: TemplateOffer, membership: Membership, session_hours: Decimal,
                   sessions_per_week: int) -> Estimate | None:
    """The template's cost plan, with runway against what the member has left."""
    from provisioning import metering

    if offer.usd_per_hour is None:
        return None
    return estimate_make(usd_per_hour=offer.usd_per_hour, session_hours=session_hours,
                         sessions_per_week=sessions_per_week,
                         remaining=metering.member_money_get(membership).remaining)


def _offers_text(offers: list[TemplateOffer]) -> str:
    parts = []
    for offer in offers:
        if offer.usd_per_hour is None:
            parts.append(f"{offer.template.slug} ({offer.template.instance_type}, no price)")
        else:
            parts.append(f"{offer.template.slug} ({offer.template.instance_type}, "
                         f"${offer.usd_per_hour:.4f}/hour, ${offer.usd_per_day:.2f}/day)")
    return "; ".join(parts)


def _approved_list_text(offers: list[TemplateOffer]) -> str:
    if not offers:
        return "This course has not approved any templates yet; ask your instructor."
    return "This course approved: " + _offers_text(offers) + "."


def _how_to_ask_text(membership: Membership, waiting: list[TemplateOffer]) -> str:
    """Where to ask for what needs approval (or for more budget)."""
    from django.urls import reverse

    url = reverse("approval-requests", args=[membership.course_id])
    if waiting:
        return (" Needs approval first: " + _offers_text(waiting)
                + f". Request access on the course page: {url}")
    return f" To ask for more, request access on the course page: {url}"


def launchable_offers(*, membership: Membership, offers: list[TemplateOffer],
                      now=None) -> tuple[list[TemplateOffer], list[TemplateOffer]]:
    """The member's offers split into what they may launch now (approved, or
    needing approval and granted to them, unexpired) and what still waits for
    approval. One query, for the member's approvals."""
    from courses.approvals import approval_templates_granted

    granted = (approval_templates_granted(membership=membership, now=now)
               if any(o.approved.requires_approval for o in offers) else {})
    usable = [o for o in offers
              if not o.approved.requires_approval or o.template.slug in granted]
    return usable, [o for o in offers if o not in usable]


# --- launch, stop, start (called from requests) ---------------------------


def storage_usd_per_hour(*, region: str, gib: int) -> Decimal:
    """What a workspace's volumes cost per hour (gp3, prorated over a 730-hour month)."""
    if not gib:
        return Decimal(0)
    per_gb_month = storage_price_get(region=region).usd_per_gb_month
    return ledger.money(per_gb_month * gib / settings.LENS_HOURS_PER_MONTH)


def cloud_account_default() -> CloudAccount:
    """The account new workspaces go to; made from settings on first use."""
    account = CloudAccount.objects.filter(is_default=True).first()
    if account is None:
        account, _ = CloudAccount.objects.get_or_create(
            is_default=True,
            defaults={"name": "default", "region": settings.AWS_DEFAULT_REGION,
                      "endpoint_url": settings.AWS_ENDPOINT_URL},
        )
    return account


def _member_metered(*, membership: Membership, now) -> Decimal:
    """Lock the member, bill them to this second, and return what their disks cost per hour.

    The guard decides on the ledger, so it must not read a ledger that is a
    minute behind.
    """
    from provisioning import metering

    Membership.objects.select_for_update(of=("self",), no_key=True).get(pk=membership.pk)
    workspaces = list(Workspace.objects.filter(owner_id=membership.pk)
                      .exclude(state=State.ARCHIVED).select_related("owner"))
    metering.workspaces_meter(now=now, queryset=workspaces)
    return metering.storage_usd_per_hour_of(workspaces)


def workspace_launch(*, membership: Membership, template_slug: str, name: str,
                     actor, market: str = "on_demand") -> Workspace:
    """Check policy, create the workspace as `requested`, and queue the launch.

    Raises LaunchRefused with a message for the member. The AWS work happens
    in a Celery task enqueued after the row is committed.
    """
    from provisioning import tasks  # the task module imports this one

    name = name.strip()
    if not membership_may(actor=membership, action=Action.LAUNCH):
        raise LaunchRefused("Your membership in this course is not active.")
    if not name:
        raise LaunchRefused("Give the workspace a name.", status=400, field="name")
    offers = course_template_offers(course_ids=[membership.course_id])[membership.course_id]
    offer = next((o for o in offers if o.template.slug == template_slug), None)
    usable, waiting = launchable_offers(membership=membership, offers=offers)
    if offer is None:
        raise LaunchRefused(
            f"{template_slug!r} is not approved for {membership.course.code}. "
            + _approved_list_text(usable) + _how_to_ask_text(membership, waiting),
            field="template")
    if offer not in usable:
        # Needs approval and the member holds none that applies now (never
        # asked, pending, denied, or expired).
        raise LaunchRefused(
            f"{template_slug} needs an instructor's approval in {membership.course.code}"
            + (f" ({offer.approved.note})" if offer.approved.note else "") + ". "
            + _approved_list_text(usable) + _how_to_ask_text(membership, waiting),
            field="template")
    template = offer.template
    if market not in {"on_demand", "spot"}:
        raise LaunchRefused("Choose on-demand or spot.", status=400, field="market")
    if market == "spot" and not template.spot_allowed:
        raise LaunchRefused(f"{template.name} does not allow spot; launch it on-demand.",
                            status=400, field="market")
    try:
        compute = price_get(region=membership.course.region,
                            instance_type=template.instance_type).usd_per_hour
        if market == "spot":  # the catalog's spot price, else on-demand: never undershoot
            compute = offer.spot_usd_per_hour or compute
        storage = storage_usd_per_hour(
            region=membership.course.region,
            gib=template.root_volume_gib + template.home_volume_gib)
    except (PriceNotFound, StoragePriceNotFound) as exc:
        raise LaunchRefused(str(exc), status=409, field="template") from exc

    limit = membership.course.max_concurrent_workspaces
    with transaction.atomic():
        # A capacity pool (GPU slots) is locked first: full, or others waiting, means queue.
        queued = slots.slot_acquire_or_enqueue(course_id=membership.course_id,
                                               template_id=template.pk)
        # Lock the member's row so concurrent clicks count each other.
        Membership.objects.select_for_update(no_key=True).get(pk=membership.pk)
        active = Workspace.objects.filter(owner=membership).filter(
            state__in=ACTIVE_STATES | {State.QUEUED}).count()
        if limit and active >= limit:
            raise LaunchRefused(
                f"You already have {active} workspace{'s' if active != 1 else ''} running or "
                f"starting; {membership.course.code} allows {limit} at a time. "
                "Stop one first.", status=409)
        try:
            with transaction.atomic():
                workspace = Workspace.objects.create(
                    owner=membership, template=template, name=name,
                    cloud_account=cloud_account_default(),
                    instance_type=template.instance_type, market=market,
                    state=State.QUEUED if queued else State.REQUESTED,
                    root_volume_gib=template.root_volume_gib,
                    home_volume_gib=template.home_volume_gib,
                    compute_usd_per_hour=compute, storage_usd_per_hour=storage,
                )
        except IntegrityError:
            raise LaunchRefused(f"You already have a workspace named {name!r}.", status=409,
                                field="name") from None
        disks = _member_metered(membership=membership, now=workspace.state_changed_at)
        try:
            with slots.guard_trial(queued):  # queued: checked now, held at admission
                authorization = budget_authorize(
                    membership=membership, workspace_id=workspace.pk, usd_per_hour=compute,
                    what=f"{template.slug} ({template.instance_type})",
                    at=workspace.state_changed_at, actor=actor,
                    storage_usd_per_hour=disks + (storage if queued else 0))
        except BudgetRefused as refusal:
            raise LaunchRefused(refusal.message) from refusal
        workspace.launch_warning = authorization.warning
        WorkspaceEvent.objects.create(workspace=workspace, from_state="", to_state=workspace.state,
                                      at=workspace.state_changed_at, actor=actor,
                                      reason=f"launch {template.slug}")
        workspace_id, owner_id = workspace.pk, membership.pk
        if queued:
            slots.queue_join(workspace=workspace, course_id=membership.course_id)
        else:
            transaction.on_commit(lambda: tasks.workspace_launch_task.delay(workspace_id))
        transaction.on_commit(lambda: broadcast_member_workspaces(membership_id=owner_id))
    return workspace


def _stopping(workspace: Workspace, *, actor, reason: str) -> None:
    workspace_transition(workspace=workspace, to=State.STOPPING, actor=actor,
                         reason=f"stop requested ({Workspace.StopReason(reason).label})",
                         stop_reason=reason)


def workspace_stop(*, workspace: Workspace, actor,
                   reason: str = Workspace.StopReason.USER) -> Workspace:
    from provisioning import tasks

    if workspace.state != State.RUNNING:
        raise TransitionNotAllowed(f"Only a running workspace can be stopped; "
                                   f"{workspace.name} is {workspace.get_state_display().lower()}.")
    with transaction.atomic():
        _stopping(workspace, actor=actor, reason=reason)
        transaction.on_commit(lambda: tasks.workspace_stop_task.delay(workspace.pk))
    return workspace


def workspaces_stop(*, workspaces: Iterable[Workspace], actor, reason: str) -> list[int]:
    """Stop several running workspaces at once; returns the ids asked to stop.

    One task sends them to AWS in batches (StopInstances takes 1,000 ids), so a
    budget run-out, a revoke or term end costs one call, not one per machine. A
    workspace that changed state meanwhile is skipped: whoever changed it wins.
    """
    from provisioning import tasks

    stopping: list[int] = []
    with transaction.atomic():
        for workspace in workspaces:
            if workspace.state != State.RUNNING:
                continue
            try:
                _stopping(workspace, actor=actor, reason=reason)
            except TransitionError:
                continue
            stopping.append(workspace.pk)
        if stopping:
            transaction.on_commit(lambda: tasks.workspaces_stop_task.delay(stopping))
    return stopping


def member_workspaces_stop(*, membership_id: int, actor, reason: str) -> int:
    """Stop every running workspace of one member; returns how many were asked to stop.

    A workspace that changes state meanwhile is skipped: whoever changed it
    wins, and the next check (budget watch, sweep) sees its new state.
    """
    return len(workspaces_stop(
        workspaces=Workspace.objects.filter(owner_id=membership_id, state=State.RUNNING),
        actor=actor, reason=reason))


def workspace_start(*, workspace: Workspace, actor) -> Workspace:
    from provisioning import tasks

    if workspace.state != State.STOPPED:
        raise TransitionNotAllowed(f"Only a stopped workspace can be started; "
                                   f"{workspace.name} is {workspace.get_state_display().lower()}.")
    with transaction.atomic():
        queued = slots.slot_acquire_or_enqueue(course_id=workspace.owner.course_id,
                                               template_id=workspace.template_id)
        now = timezone.now()
        disks = _member_metered(membership=workspace.owner, now=now)
        try:
            with slots.guard_trial(queued):  # queued: checked now, held at admission
                authorization = budget_authorize(
                    membership=workspace.owner, workspace_id=workspace.pk,
                    usd_per_hour=workspace.compute_usd_per_hour,
                    what=f"{workspace.name} ({workspace.instance_type})", at=now,
                    actor=actor, storage_usd_per_hour=disks)
        except BudgetRefused as refusal:
            raise StartRefused(refusal.message) from refusal
        workspace.launch_warning = authorization.warning
        if queued:  # every slot taken: wait in line with the disks as they are
            workspace_transition(workspace=workspace, to=State.QUEUED, actor=actor,
                                 reason="start: waiting for a slot", failure_reason="")
            slots.queue_join(workspace=workspace, course_id=workspace.owner.course_id)
            return workspace
        workspace_transition(workspace=workspace, to=State.PENDING, actor=actor, reason="start",
                             stop_reason="", failure_reason="")
        transaction.on_commit(lambda: tasks.workspace_start_task.delay(workspace.pk))
    return workspace


# --- AWS work (called from Celery tasks; no AWS call inside a transaction) --


def _fresh(workspace_id: int) -> Workspace | None:
    return (Workspace.objects.select_related("cloud_account", "template", "owner")
            .filter(pk=workspace_id).first())


def workspace_provision(*, workspace_id: int) -> Workspace | None:
    """Make sure exactly one instance exists for a requested workspace.

    Safe to run any number of times: it adopts an instance already tagged
    with the workspace before it would run a new one, and RunInstances
    carries the workspace's ClientToken for AWS's own de-duplication.
    """
    workspace = _fresh(workspace_id)
    if workspace is None or workspace.state not in {State.REQUESTED, State.PENDING}:
        return workspace
    account = workspace.cloud_account
    instance = aws.instance_find_for_workspace(account, workspace_id=workspace.pk)
    if instance is None:
        if workspace.instance_id:  # it existed and is gone: do not silently make another
            return workspace_fail(workspace_id=workspace.pk,
                                  reason=f"Instance {workspace.instance_id} disappeared.")
        from provisioning import lifecycle

        instance = lifecycle.instance_run_for(workspace=workspace)
    if workspace.state == State.REQUESTED:
        try:
            workspace_transition(workspace=workspace, to=State.PENDING,
                                 reason="instance requested", instance_id=instance.id,
                                 key_name=instance.key_name)
        except StaleState:
            return _fresh(workspace_id)
    elif workspace.instance_id != instance.id:
        Workspace.objects.filter(pk=workspace.pk).update(instance_id=instance.id)
        workspace.instance_id = instance.id
    return workspace_sync(workspace=workspace, instance=instance)


def workspace_stop_instance(*, workspace_id: int) -> Workspace | None:
    workspace = _fresh(workspace_id)
    if workspace is None or workspace.state != State.STOPPING:
        return workspace
    result = aws.instances_stop(workspace.cloud_account, [workspace.instance_id])
    if result.deferred:
        raise RateLimited(bucket="stop", retry_after=result.retry_after)
    if workspace.instance_id in result.failed:
        raise result.failed[workspace.instance_id]
    return workspace_sync(workspace=workspace)


@dataclass(frozen=True)
class BatchStop:
    """What a batched stop left to do: workspaces to check on, and to send again later."""

    sent: list[int]
    deferred: list[int]
    retry_after: float


def workspaces_stop_instances(*, workspace_ids: list[int]) -> BatchStop:
    """Send StopInstances for the workspaces still stopping, in batches per cloud account.

    An instance AWS no longer has is folded in as terminated; one AWS refuses
    for another reason keeps the reason on its row. The rest of the batch stops
    either way. Throttling raises (the caller retries the whole, idempotent, batch).
    """
    workspaces = list(Workspace.objects.select_related("cloud_account")
                      .filter(pk__in=workspace_ids, state=State.STOPPING)
                      .exclude(instance_id=""))
    accounts: dict[int, list[Workspace]] = {}
    for workspace in workspaces:
        accounts.setdefault(workspace.cloud_account_id, []).append(workspace)
    sent: list[int] = []
    deferred: list[int] = []
    retry_after = 0.0
    for group in accounts.values():
        by_instance = {w.instance_id: w for w in group}
        result = aws.instances_stop(group[0].cloud_account, list(by_instance))
        for instance_id, error in result.failed.items():
            workspace = by_instance[instance_id]
            if isinstance(error, aws.InstanceNotFound):
                workspace_mark_gone(workspace_id=workspace.pk,
                                    reason=f"AWS no longer has the instance ({error}).")
            else:
                workspace_fail(workspace_id=workspace.pk, reason=str(error))
        sent += [by_instance[i].pk for i in result.done]
        deferred += [by_instance[i].pk for i in result.deferred]
        if result.deferred:
            retry_after = max(retry_after, result.retry_after)
    return BatchStop(sent=sent, deferred=deferred, retry_after=retry_after)


def workspace_start_instance(*, workspace_id: int) -> Workspace | None:
    workspace = _fresh(workspace_id)
    if workspace is None or workspace.state != State.PENDING:
        return workspace
    if not workspace.instance_id:  # AWS took the machine (spot): a fresh one, same home
        from provisioning import lifecycle

        instance = (aws.instance_find_for_workspace(workspace.cloud_account,
                                                    workspace_id=workspace.pk)
                    or lifecycle.instance_run_for(workspace=workspace))
        Workspace.objects.filter(pk=workspace.pk).update(instance_id=instance.id)
        workspace.instance_id = instance.id
        return workspace_sync(workspace=workspace, instance=instance)
    aws.instances_start(workspace.cloud_account, [workspace.instance_id])
    return workspace_sync(workspace=workspace)


# EC2 state → the Lens state a workspace in a given state moves to.
_FOLD: dict[tuple[str, str], State] = {
    (State.PENDING, "running"): State.RUNNING,
    (State.STOPPING, "stopped"): State.STOPPED,
    (State.HIBERNATING, "stopped"): State.STOPPED,
}


def workspace_sync(*, workspace: Workspace, instance: aws.Instance | None = None) -> Workspace:
    """Fold what EC2 reports for the workspace's instance into its state."""
    from provisioning import lifecycle

    if workspace.state == State.RESETTING:  # its old machine is going on purpose
        return workspace
    if instance is None:
        instance = aws.instance_get(workspace.cloud_account, workspace.instance_id)
    addresses = {"public_ip": instance.public_ip, "private_ip": instance.private_ip,
                 "public_dns": instance.public_dns}
    target = _FOLD.get((State(workspace.state), instance.state))
    if (workspace.market == "spot" and instance.state in {"stopped", "shutting-down",
                                                          "terminated"}
            and lifecycle.is_spot_interruption(instance)):
        return lifecycle.workspace_interrupted(workspace_id=workspace.pk,
                                               reason=instance.state_reason,
                                               instance_state=instance.state)
    if target == State.RUNNING and not lifecycle.home_volume_ready(workspace=workspace,
                                                                   instance=instance):
        return workspace  # the next poll finds the home volume ready and attaches it
    if target is None:
        if instance.state in {"shutting-down", "terminated"} and \
                workspace.state not in {State.TERMINATING, State.TERMINATED, State.ARCHIVED}:
            return workspace_fail(workspace_id=workspace.pk, reason=(
                f"AWS terminated instance {instance.id}"
                + (f": {instance.state_reason}" if instance.state_reason else ".")))
        return workspace
    if target == State.STOPPED:
        addresses = {"public_ip": None, "public_dns": ""}
    try:
        return workspace_transition(workspace=workspace, to=target,
                                    reason=f"EC2 reports {instance.state}", **addresses)
    except StaleState:
        return _fresh(workspace.pk)


def workspace_is_settled(workspace: Workspace | None) -> bool:
    return workspace is None or workspace.state not in {
        State.REQUESTED, State.PENDING, State.STOPPING, State.HIBERNATING, State.TERMINATING}


def workspace_mark_gone(*, workspace_id: int, reason: str) -> Workspace | None:
    """AWS no longer has the instance: fold that in (AWS is the source of truth).

    The card keeps showing the workspace as terminated, with the reason.
    """
    workspace = _fresh(workspace_id)
    if workspace is None or workspace.state in {State.TERMINATED, State.ARCHIVED}:
        return workspace
    try:
        with transaction.atomic():
            if workspace.state != State.TERMINATING:
                workspace_transition(workspace=workspace, to=State.TERMINATING, reason=reason[:200],
                                     failure_reason=reason)
            workspace_transition(workspace=workspace, to=State.TERMINATED, reason=reason[:200],
                                 failure_reason=reason, public_ip=None, public_dns="")
    except StaleState:
        pass
    return _fresh(workspace_id)


def workspace_fail(*, workspace_id: int, reason: str) -> Workspace | None:
    """Record why a launch or start gave up, where the member's card shows it."""
    workspace = _fresh(workspace_id)
    if workspace is None:
        return None
    if not is_allowed(workspace.state, State.FAILED):
        Workspace.objects.filter(pk=workspace_id).update(failure_reason=reason)
        transaction.on_commit(
            lambda: broadcast_member_workspaces(membership_id=workspace.owner_id))
        return _fresh(workspace_id)
    try:
        return workspace_transition(workspace=workspace, to=State.FAILED, reason=reason[:200],
                                    failure_reason=reason)
    except StaleState:
        return _fresh(workspace_id)
