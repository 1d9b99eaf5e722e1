"""Reports: the course's money page, a member's weekly report, session summaries.

Built from ledger lines in a fixed number of queries, whatever the class size.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Q, Sum
from django.db.models.functions import TruncDate

from billing import ledger
from billing.models import LedgerEntry
from courses.models import Course, Membership

ZERO = Decimal(0)
_SPEND = Q(kind=LedgerEntry.Kind.USAGE) | Q(kind=LedgerEntry.Kind.ADJUSTMENT)


@dataclass(frozen=True)
class MemberRow:
    membership: Membership
    cap: Decimal
    spend: Decimal

    @property
    def share(self) -> Decimal:
        return self.spend / self.cap if self.cap > 0 else Decimal(1)

    @property
    def percent(self) -> int:
        return min(100, int(self.share * 100))


@dataclass(frozen=True)
class SectionRow:
    section: str
    members: int
    spend: Decimal
    cap: Decimal


@dataclass(frozen=True)
class CourseMoney:
    course: Course
    rows: list[MemberRow]
    spend: Decimal
    caps_total: Decimal
    sections: list[SectionRow] = field(default_factory=list)

    @property
    def over_80(self) -> list[MemberRow]:
        return [r for r in self.rows if r.share >= Decimal("0.8")]

    @property
    def biggest(self) -> list[MemberRow]:
        return sorted((r for r in self.rows if r.spend > 0), key=lambda r: -r.spend)[:5]

    @property
    def caps_exceed_total(self) -> bool:
        return bool(self.course.budget_total) and self.caps_total > self.course.budget_total


def course_money(*, course: Course) -> CourseMoney:
    """Every member's spend against their cap, per section, in two queries."""
    members = list(Membership.objects.filter(course=course)
                   .exclude(status=Membership.Status.REVOKED).order_by("section", "email"))
    spend = dict(LedgerEntry.objects.filter(_SPEND, course=course).values("membership_id")
                 .annotate(total=Sum("amount")).values_list("membership_id", "total"))
    rows = []
    for m in members:
        m.course = course  # one course for all: no query per row
        rows.append(MemberRow(membership=m, cap=ledger.member_cap(m),
                              spend=spend.get(m.pk, ZERO)))
    by_section: dict[str, list[MemberRow]] = defaultdict(list)
    for row in rows:
        if row.membership.role == Membership.Role.STUDENT:
            by_section[row.membership.section or "—"].append(row)
    sections = [SectionRow(section=name, members=len(group),
                           spend=sum((r.spend for r in group), ZERO),
                           cap=sum((r.cap for r in group), ZERO))
                for name, group in sorted(by_section.items())]
    return CourseMoney(course=course, rows=rows, spend=sum(spend.values(), ZERO),
                       caps_total=sum((r.cap for r in rows
                                       if r.membership.role == Membership.Role.STUDENT), ZERO),
                       sections=sections)


# --- weekly report -----------------------------------------------------------


@dataclass(frozen=True)
class WeeklyReport:
    membership: Membership
    start: date  # first day, in the course's zone
    days: list[tuple[date, Decimal]]
    per_workspace: list[tuple[int | None, Decimal]]
    week_total: Decimal
    month_to_date: Decimal
    term_to_date: Decimal
    burn_per_week: Decimal
    projected_term_total: Decimal | None
    cap: Decimal

    @property
    def share(self) -> Decimal:
        return self.term_to_date / self.cap if self.cap > 0 else Decimal(1)


def member_weekly_report(*, membership: Membership, end: datetime) -> WeeklyReport:
    """The seven days up to `end`, with the figures an advisor asks for."""
    course = membership.course
    zone = course.zone
    local_end = end.astimezone(zone)
    start_day = local_end.date() - timedelta(days=6)
    lines = LedgerEntry.objects.filter(_SPEND, membership=membership)
    week_start = datetime.combine(start_day, time.min, tzinfo=zone)
    week = lines.filter(interval_start__gte=week_start, interval_start__lt=end).annotate(
        day=TruncDate("interval_start", tzinfo=zone))
    per_day = dict(week.values("day").annotate(total=Sum("amount")).values_list("day", "total"))
    days = [(start_day + timedelta(days=i), per_day.get(start_day + timedelta(days=i), ZERO))
            for i in range(7)]
    per_ws = list(week.values("workspace_id").annotate(total=Sum("amount"))
                  .order_by("-total").values_list("workspace_id", "total"))
    month_start = local_end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month = ledger._sum(lines.filter(interval_start__gte=month_start))
    term = ledger._sum(lines)
    week_total = sum((d[1] for d in days), ZERO)
    term_start = course.starts_at or membership.created_at
    weeks_in = max(Decimal(1), Decimal((end - term_start).days) / 7)
    burn = (term / weeks_in).quantize(Decimal("0.01"))
    projected = None
    if course.ends_at and course.starts_at:
        term_weeks = Decimal((course.ends_at - course.starts_at).days) / 7
        projected = (burn * term_weeks).quantize(Decimal("0.01"))
    return WeeklyReport(membership=membership, start=start_day, days=days,
                        per_workspace=per_ws, week_total=week_total, month_to_date=month,
                        term_to_date=term, burn_per_week=burn, projected_term_total=projected,
                        cap=ledger.member_cap(membership))
