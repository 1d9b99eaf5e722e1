"""The ledger's services: what has been spent, what is committed, and the
lines that record it. Every line is appended once, keyed by an idempotency
key, so a task that runs twice writes nothing the second time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import DecimalField, Max, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import LedgerEntry
from courses.models import Membership

Kind = LedgerEntry.Kind
Meter = LedgerEntry.Meter
SIX = Decimal("0.000001")
ZERO = Decimal("0")
_SPEND = Q(kind=Kind.USAGE) | Q(kind=Kind.ADJUSTMENT)


def money(value: Decimal) -> Decimal:
    return value.quantize(SIX, rounding=ROUND_HALF_UP)


def cost_of(*, usd_per_hour: Decimal, seconds: float | Decimal) -> Decimal:
    """Per-second price of `seconds` at an hourly rate, to the micro-dollar."""
    return money(usd_per_hour * Decimal(str(seconds)) / Decimal(3600))


def _sum(queryset, field: str = "amount") -> Decimal:
    return queryset.aggregate(total=Coalesce(Sum(field), Value(ZERO),
                                             output_field=DecimalField()))["total"]


def _append(**fields) -> LedgerEntry | None:
    """Insert a line unless its idempotency key is already there."""
    try:
        with transaction.atomic():
            return LedgerEntry.objects.create(**fields)
    except IntegrityError:
        if LedgerEntry.objects.filter(idempotency_key=fields["idempotency_key"]).exists():
            return None
        raise


# --- reading --------------------------------------------------------------


def member_cap(membership: Membership) -> Decimal:
    """The member's cap: their own if set, else the course's default per member."""
    if membership.budget_cap is not None:
        return membership.budget_cap
    return membership.course.default_member_budget


def member_spend(*, membership_id: int, since: datetime | None = None) -> Decimal:
    lines = LedgerEntry.objects.filter(_SPEND, membership_id=membership_id)
    if since is not None:
        lines = lines.filter(interval_start__gte=since)
    return _sum(lines)


def members_spend(*, course_id: int, membership_ids=None) -> dict[int, Decimal]:
    """Spend of many members of one course in one query (members with none are absent)."""
    lines = LedgerEntry.objects.filter(_SPEND, course_id=course_id)
    if membership_ids is not None:
        lines = lines.filter(membership_id__in=list(membership_ids))
    return dict(lines.values("membership_id").annotate(total=Sum("amount"))
                .values_list("membership_id", "total").order_by())


def workspace_compute_cost(*, workspace_id: int, since: datetime) -> Decimal:
    """What a workspace's compute has cost since a moment (a session's start)."""
    return _sum(LedgerEntry.objects.filter(kind=Kind.USAGE, meter=Meter.COMPUTE,
                                           workspace_id=workspace_id,
                                           interval_start__gte=since))


def _open_holds(lines):
    """Holds not yet released, each with what is still unused of it.

    A hold covers the first billable stretch of a run; as usage for that
    workspace is metered, the hold shrinks, so nothing is counted twice.
    """
    used = (LedgerEntry.objects.filter(kind=Kind.USAGE, meter=Meter.COMPUTE,
                                       workspace_id=OuterRef("workspace_id"),
                                       interval_start__gte=OuterRef("interval_start"))
            .values("workspace_id").annotate(total=Sum("amount")).values("total"))
    return (lines.filter(kind=Kind.HOLD, releases__isnull=True)
            .annotate(used=Coalesce(Subquery(used), Value(ZERO), output_field=DecimalField())))


def _unused(holds) -> Decimal:
    return sum((max(ZERO, h.amount - h.used) for h in holds), ZERO)


def member_committed(*, membership_id: int) -> Decimal:
    """Spend plus what open holds still reserve."""
    holds = _open_holds(LedgerEntry.objects.filter(membership_id=membership_id))
    return member_spend(membership_id=membership_id) + _unused(holds)


def course_committed(*, course_id: int) -> Decimal:
    spend = _sum(LedgerEntry.objects.filter(_SPEND, course_id=course_id))
    return spend + _unused(_open_holds(LedgerEntry.objects.filter(course_id=course_id)))


def storage_horizon(course, now: datetime) -> tuple[datetime, bool]:
    """Until when a member's disks are paid for in advance, and whether that is a fixed moment.

    Disks cost money while a workspace is stopped, so the money for them up to
    the end of term is set aside: then no stop can come too late for storage.
    A course without an end date sets aside a rolling window instead. After
    the term, term-end cleanup owns the disks and nothing more is set aside.
    """
    if course.ends_at is not None:
        return max(course.ends_at, now), True
    return now + timedelta(days=settings.LENS_STORAGE_RESERVE_DAYS), False


def storage_reserved(*, course, usd_per_hour: Decimal, now: datetime) -> Decimal:
    """What the member's disks will cost from now until the horizon."""
    until, _ = storage_horizon(course, now)
    return money(usd_per_hour * Decimal((until - now).total_seconds()) / Decimal(3600))


@dataclass(frozen=True)
class MemberMoney:
    cap: Decimal
    spend: Decimal
    committed: Decimal
    alert: str = ""  # the latest budget alert, shown in the app
    reserved: Decimal = ZERO  # disks, paid for in advance until the end of term
    reserved_until: datetime | None = None

    @property
    def remaining(self) -> Decimal:
        return self.cap - self.committed - self.reserved

    @property
    def used_share(self) -> Decimal:
        """Spent or set aside for disks, as a share of the cap (what alerts count)."""
        return (self.spend + self.reserved) / self.cap if self.cap > 0 else Decimal(1)

    @property
    def share(self) -> Decimal:
        """Spend as a share of the cap (0–1+), for bars and alerts."""
        return self.spend / self.cap if self.cap > 0 else Decimal(1)

    @property
    def percent(self) -> int:
        """Share of the cap spent, 0–100, for a progress bar."""
        return min(100, max(0, int(self.share * 100)))

    @property
    def reserved_percent(self) -> int:
        """The disks' share of the cap, drawn after the spent part of the bar."""
        if self.cap <= 0:
            return 0
        return min(100 - self.percent, max(0, int(self.reserved / self.cap * 100)))


def member_money(membership: Membership, *, storage_usd_per_hour: Decimal = ZERO,
                 now: datetime | None = None) -> MemberMoney:
    """The member's budget at a glance.

    `storage_usd_per_hour` is what their existing disks cost per hour (the
    caller knows their workspaces; billing does not); it is set aside to the
    end of term.
    """
    from billing.models import BudgetAlert

    latest = (BudgetAlert.objects.filter(membership=membership, kind=BudgetAlert.Kind.SPEND)
              .order_by("-threshold")
              .values_list("threshold", "spend", "cap").first())
    alert = ""
    if latest:
        threshold, spent, cap = latest
        alert = (f"You have reached {threshold}% of your budget of ${cap:.2f}."
                 + (" Lens stops your machines at the cap." if threshold < 100 else
                    " Lens stopped your machines; ask your instructor for more."))
    now = now or timezone.now()
    reserved, until = ZERO, None
    if storage_usd_per_hour:
        reserved = storage_reserved(course=membership.course, usd_per_hour=storage_usd_per_hour,
                                    now=now)
        until = storage_horizon(membership.course, now)[0]
    return MemberMoney(cap=member_cap(membership),
                       spend=member_spend(membership_id=membership.pk),
                       committed=member_committed(membership_id=membership.pk), alert=alert,
                       reserved=reserved, reserved_until=until)


# --- writing --------------------------------------------------------------


def hold_place(*, membership: Membership, workspace_id: int, amount: Decimal,
               usd_per_hour: Decimal, at: datetime, actor=None, note: str = "") -> LedgerEntry:
    sequence = LedgerEntry.objects.filter(kind=Kind.HOLD, workspace_id=workspace_id).count()
    return LedgerEntry.objects.create(
        membership=membership, course_id=membership.course_id, workspace_id=workspace_id,
        kind=Kind.HOLD, meter=Meter.COMPUTE, amount=money(amount), usd_per_hour=usd_per_hour,
        interval_start=at, idempotency_key=f"hold:{workspace_id}:{sequence}", actor=actor,
        note=note[:300])


def holds_release(*, workspace_id: int, note: str = "") -> int:
    """Close every open hold of a workspace (it stopped, failed or is gone)."""
    released = 0
    for hold in LedgerEntry.objects.filter(kind=Kind.HOLD, workspace_id=workspace_id,
                                           releases__isnull=True):
        line = _append(membership_id=hold.membership_id, course_id=hold.course_id,
                       workspace_id=workspace_id, kind=Kind.RELEASE, meter=Meter.COMPUTE,
                       amount=hold.amount, hold=hold, idempotency_key=f"release:{hold.pk}",
                       note=note[:300])
        released += line is not None
    return released


def billed_until(*, workspace_ids) -> dict[tuple[int, str], tuple[datetime, datetime]]:
    """The latest line of each (workspace, meter), as (start, end): one query for many.

    A later run's lines start and end after an earlier run's (each covers at
    least its 60-second minimum from a later start), so the greatest start and
    the greatest end belong to the same, latest line.
    """
    rows = (LedgerEntry.objects.filter(kind=Kind.USAGE, workspace_id__in=list(workspace_ids))
            .values("workspace_id", "meter")
            .annotate(start=Max("interval_start"), end=Max("interval_end")))
    return {(row["workspace_id"], row["meter"]): (row["start"], row["end"]) for row in rows}


_UNKNOWN = object()


def usage_cover(*, membership_id: int, course_id: int, workspace_id: int, meter: str,
                run_start: datetime, covered_until: datetime, usd_per_hour: Decimal,
                billed_through=_UNKNOWN) -> LedgerEntry | None:
    """Bill a run of a workspace up to `covered_until`, from where billing left off.

    Lines are keyed by workspace, meter and interval start, so covering the
    same stretch twice writes one line. Each line is the run's cost so far
    minus its cost up to the line's start, both rounded, so however many lines
    a run is cut into they add up to the run's exact price.
    `billed_through` (from `billed_until`) saves the query that finds it.
    """
    if billed_through is _UNKNOWN:
        billed_through = (LedgerEntry.objects
                          .filter(kind=Kind.USAGE, workspace_id=workspace_id, meter=meter,
                                  interval_start__gte=run_start)
                          .aggregate(end=Max("interval_end"))["end"])
    start = max(billed_through or run_start, run_start)
    if covered_until <= start:
        return None
    before = (start - run_start) / timedelta(seconds=1)
    through = (covered_until - run_start) / timedelta(seconds=1)
    amount = (cost_of(usd_per_hour=usd_per_hour, seconds=through)
              - cost_of(usd_per_hour=usd_per_hour, seconds=before))
    return _append(
        membership_id=membership_id, course_id=course_id, workspace_id=workspace_id,
        kind=Kind.USAGE, meter=meter, usd_per_hour=usd_per_hour, amount=amount,
        interval_start=start, interval_end=covered_until,
        idempotency_key=f"usage:{workspace_id}:{meter}:{start.isoformat()}")


def adjustment_grant(*, membership: Membership, amount: Decimal, actor, note: str,
                     key: str) -> LedgerEntry | None:
    """A credit (negative) or charge (positive) by staff, with their reason."""
    now = timezone.now()
    return _append(membership=membership, course_id=membership.course_id,
                   kind=Kind.ADJUSTMENT, amount=money(amount), actor=actor, note=note[:300],
                   interval_start=now, interval_end=now, idempotency_key=f"adjustment:{key}")


def cap_set(*, membership: Membership, cap: Decimal, actor, note: str, key: str) -> bool:
    """Change a member's cap; the change is a ledger line with who and why."""
    with transaction.atomic():
        locked = Membership.objects.select_for_update(no_key=True).get(pk=membership.pk)
        line = _append(membership=locked, course_id=locked.course_id, kind=Kind.CAP,
                       amount=money(cap), actor=actor, note=note[:300],
                       idempotency_key=f"cap:{key}")
        if line is None:
            return False
        Membership.objects.filter(pk=locked.pk).update(budget_cap=cap)
    membership.budget_cap = cap
    return True
