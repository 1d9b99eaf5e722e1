"""The budget guard: may this member start paying for this machine now?

Called inside the launch (or start) transaction. It locks the member's row
while it decides, so concurrent clicks are decided one after another against
the same money, and it places a hold for the minimum billable run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal

from django.conf import settings

from billing import ledger
from billing.models import LedgerEntry
from courses.models import Course, Membership


class BudgetRefused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Authorization:
    hold: LedgerEntry
    warning: str


def _usd(value: Decimal) -> str:
    return f"${value:,.2f}"


def day_start(course: Course, at: datetime) -> datetime:
    """Midnight of `at`'s day in the course's time zone (daily caps reset then)."""
    local = at.astimezone(course.zone)
    return datetime.combine(local.date(), time.min, tzinfo=course.zone)


def runway_text(*, usd_per_hour: Decimal, remaining: Decimal) -> str:
    per_day = usd_per_hour * 24
    hours = remaining / usd_per_hour if usd_per_hour else Decimal(0)
    if hours >= 24:
        span = f"{hours / 24:.1f} days"
    elif hours >= 1:
        span = f"{hours:.1f} hours"
    else:
        span = f"{max(1, int(hours * 60))} minutes"
    left = _usd(remaining) if remaining >= 1 else f"${remaining:.4f}"
    return f"At {_usd(per_day)}/day your remaining {left} lasts about {span} of running."


def budget_authorize(*, membership: Membership, workspace_id: int, usd_per_hour: Decimal,
                     what: str, at: datetime, actor=None,
                     storage_usd_per_hour: Decimal = ledger.ZERO) -> Authorization:
    """Hold the minimum billable run, or refuse with the numbers that decided it.

    `storage_usd_per_hour` is what all the member's disks, this workspace's
    included, cost per hour: that money is set aside to the end of term first.
    The caller meters the member to this second before asking. Must run inside
    a transaction; the row lock lasts until it commits.
    """
    # Lock the member's row only (not the joined course), and as a no-key lock so
    # inserts that merely reference it (ledger lines, workspaces) are not blocked.
    membership = (Membership.objects.select_for_update(of=("self",), no_key=True)
                  .select_related("course").get(pk=membership.pk))
    course = membership.course
    hours = Decimal(str(settings.LENS_HOLD_HOURS))
    hold = ledger.money(usd_per_hour * hours)
    price = f"{what} costs ${usd_per_hour:.4f}/hour"
    cap = ledger.member_cap(membership)
    committed = ledger.member_committed(membership_id=membership.pk)
    disks = ledger.storage_reserved(course=course, usd_per_hour=storage_usd_per_hour, now=at) \
        if storage_usd_per_hour else ledger.ZERO
    remaining = cap - committed - disks
    if hold > remaining:
        for_disks = (f", after {_usd(disks)} set aside for your workspaces' disks until the "
                     "end of term" if disks else "")
        raise BudgetRefused(
            f"Not enough budget: you have {_usd(max(remaining, Decimal(0)))} left of "
            f"{_usd(cap)}{for_disks}; {price}, and starting it sets aside {_usd(hold)} for the "
            f"first {hours:g} hour{'s' if hours != 1 else ''}. Ask your instructor for more "
            "budget.")
    if course.max_daily_cost:
        today = ledger.member_spend(membership_id=membership.pk, since=day_start(course, at))
        held = committed - ledger.member_spend(membership_id=membership.pk)
        if today + held + hold > course.max_daily_cost:
            raise BudgetRefused(
                f"Daily cap reached: {course.code} allows {_usd(course.max_daily_cost)} a day "
                f"per person and you have used {_usd(today + held)} today; {price}. "
                "It resets at midnight.")
    if course.budget_total:
        Course.objects.select_for_update(no_key=True).filter(pk=course.pk).first()
        course_left = course.budget_total - ledger.course_committed(course_id=course.pk)
        if hold > course_left:
            raise BudgetRefused(
                f"The course budget is used up: {_usd(max(course_left, Decimal(0)))} of "
                f"{_usd(course.budget_total)} left for {course.code}; {price}. "
                "Tell your instructor.")
    line = ledger.hold_place(membership=membership, workspace_id=workspace_id, amount=hold,
                             usd_per_hour=usd_per_hour, at=at, actor=actor,
                             note=f"hold for {what}")
    left_after = remaining - hold
    warning = ""
    if usd_per_hour * 24 * 7 > remaining:
        warning = runway_text(usd_per_hour=usd_per_hour, remaining=remaining)
    elif left_after < cap * Decimal("0.2"):
        warning = f"You have {_usd(remaining)} of {_usd(cap)} left."
    return Authorization(hold=line, warning=warning)
