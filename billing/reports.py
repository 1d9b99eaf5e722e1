"""Reports: the course's money page, the weekly reports (a member's and a
course's, as pages, CSV, API and email), and who may read them.

Built from ledger lines in a fixed number of queries, whatever the class size.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.http import Http404
from django.template.loader import render_to_string
from django.urls import reverse

from billing import ledger
from billing.models import LedgerEntry, ReportDelivery
from courses.models import Course, Membership
from courses.policy import Action, membership_may

log = logging.getLogger(__name__)
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


# --- who may read a report ----------------------------------------------------


def report_member_get(*, user, membership_id: int) -> Membership:
    """The member whose report `user` asks for, if `user` may read it.

    Someone outside the course, or a classmate (students see only their own
    things), gets 404: we do not confirm that another member exists. A member
    who can see the owner but not their money gets 403.
    """
    owner = Membership.objects.select_related("course").filter(pk=membership_id).first()
    if owner is None or not user.is_authenticated:
        raise Http404("No such member.")
    actor = Membership.objects.active().filter(user=user, course_id=owner.course_id).first()
    if not membership_may(actor=actor, action=Action.VIEW_WORKSPACE, owner=owner):
        raise Http404("No such member.")
    if not membership_may(actor=actor, action=Action.VIEW_MONEY, owner=owner):
        raise PermissionDenied("Your role in this course does not show members' money.")
    return owner


def report_course_get(*, user, course_id: int) -> Course:
    """The course whose report `user` asks for: 404 for outsiders, 403 for students."""
    actor = None
    if user.is_authenticated:
        actor = (Membership.objects.active().select_related("course")
                 .filter(user=user, course_id=course_id).first())
    if actor is None:
        raise Http404("No such course.")
    if not membership_may(actor=actor, action=Action.VIEW_COURSE_MONEY):
        raise PermissionDenied("Only the course's staff see the course report.")
    return actor.course


def report_end_resolve(*, course: Course, week: date | None, now: datetime) -> datetime:
    """Where a report ends: now, or the end of the local day `week` for a past week."""
    if week is None or week >= now.astimezone(course.zone).date():
        return now
    return _midnight(week + timedelta(days=1), course.zone)


# --- spend in a window of local days -----------------------------------------

WEEK = timedelta(days=7)
CENT = Decimal("0.01")
_MICRO = timedelta(microseconds=1)
_SIX = Decimal("0.000001")


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant a local day begins, in UTC, so arithmetic across DST is exact."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def _last_day(end: datetime, zone: ZoneInfo) -> date:
    """The local day of the last instant before `end` (an end at midnight closes the day before)."""
    return (end - _MICRO).astimezone(zone).date()


def _micros(span: timedelta) -> int:
    return span // _MICRO


def _spread(*, amount: Decimal, start: datetime, until: datetime, zone: ZoneInfo,
            cut: datetime) -> list[tuple[date, Decimal]]:
    """Share a line's amount among the local days its interval covers, by time.

    A run metered in one line may cross midnight, or the report's end; each
    day gets its part and the parts add up to the line to the micro-dollar.
    Parts from `cut` on are dropped: they belong to a later report.
    """
    start, until = start.astimezone(UTC), until.astimezone(UTC)
    if until <= start:
        return [(start.astimezone(zone).date(), amount)] if start < cut else []
    edges = {start, until}
    day = start.astimezone(zone).date() + timedelta(days=1)
    while (midnight := _midnight(day, zone)) < until:
        edges.add(midnight)
        day += timedelta(days=1)
    if start < cut < until:
        edges.add(cut)
    edges_sorted = sorted(edges)
    total = _micros(until - start)
    parts, given = [], ZERO
    for i, (a, b) in enumerate(zip(edges_sorted, edges_sorted[1:], strict=False)):
        last = i == len(edges_sorted) - 2
        share = amount - given if last else (amount * _micros(b - a) / total).quantize(
            _SIX, rounding=ROUND_HALF_UP)
        given += share
        if a < cut:
            parts.append((a.astimezone(zone).date(), share))
    return parts


@dataclass(frozen=True)
class _Window:
    """Spend from a local day up to an instant, grouped by a key (workspace or member)."""

    by_day: dict[tuple[int | None, date], Decimal]
    before: dict[int | None, Decimal]  # spend before the window: the rest of term to date


def _window_spend(*, lines, zone: ZoneInfo, first_day: date, end: datetime,
                  key: str) -> _Window:
    """Three queries whatever the number of lines or members.

    Lines inside one local day are summed by the database; the few that
    cross a midnight or an edge of the window are read and spread by time.
    """
    start = _midnight(first_day, zone)
    lines = (lines.filter(_SPEND).order_by()
             .annotate(when=Coalesce("interval_start", "created_at"),
                       until=Coalesce("interval_end", "interval_start", "created_at"))
             .annotate(when_day=TruncDate("when", tzinfo=zone),
                       until_day=TruncDate("until", tzinfo=zone)))
    inside = Q(when__gte=start, until__lte=end, when_day=F("until_day"))
    by_day: dict[tuple[int | None, date], Decimal] = defaultdict(Decimal)
    before: dict[int | None, Decimal] = defaultdict(Decimal)
    for k, day, total in (lines.filter(inside).values(key, "when_day")
                          .annotate(total=Sum("amount")).values_list(key, "when_day", "total")):
        by_day[(k, day)] += total
    for k, total in (lines.filter(when__lt=start, until__lte=start).values(key)
                     .annotate(total=Sum("amount")).values_list(key, "total")):
        before[k] += total
    crossing = (lines.filter(when__lt=end, until__gt=start).exclude(inside)
                .values_list(key, "amount", "when", "until"))
    for k, amount, when, until in crossing:
        for day, part in _spread(amount=amount, start=when, until=until, zone=zone, cut=end):
            if day >= first_day:
                by_day[(k, day)] += part
            else:
                before[k] += part
    return _Window(by_day=dict(by_day), before=dict(before))


def _weeks(span: timedelta) -> Decimal:
    return Decimal(_micros(span)) / Decimal(_micros(WEEK))


def _pace(*, spent: Decimal, since: datetime, end: datetime, starts_at: datetime | None,
          ends_at: datetime | None) -> tuple[Decimal, Decimal | None]:
    """Burn per week so far and the term total it leads to, both to the cent.

    Burn is spend ÷ weeks elapsed, at least one week so that a first day's
    spend is not multiplied into a scare. The projection adds that pace for
    the weeks left, so it is never below what is already spent; without both
    term dates there is nothing to project to.
    """
    stop = min(end, ends_at) if ends_at else end
    burn = spent / max(Decimal(1), _weeks(stop - since))
    projected = None
    if starts_at and ends_at:
        left = max(Decimal(0), _weeks(ends_at - max(end, starts_at)))
        projected = (spent + burn * left).quantize(CENT, rounding=ROUND_HALF_UP)
    return burn.quantize(CENT, rounding=ROUND_HALF_UP), projected


def _share(spend: Decimal, cap: Decimal) -> Decimal:
    """Spend over cap; a zero cap with spend counts as used up, without spend as untouched."""
    if cap > 0:
        return spend / cap
    return Decimal(1) if spend > 0 else ZERO


def _level(share: Decimal) -> str:
    """ok / warn / over: the same thresholds as the budget bar and its alerts."""
    if share >= 1:
        return "over"
    return "warn" if share >= Decimal("0.8") else "ok"


class _TermShare:
    """Share of the cap spent this term, for bars and colours (needs term_to_date, cap)."""

    @property
    def share(self) -> Decimal:
        return _share(self.term_to_date, self.cap)

    @property
    def percent(self) -> int:
        return min(100, max(0, int(self.share * 100)))

    @property
    def level(self) -> str:
        return _level(self.share)


# --- the chart -----------------------------------------------------------------


@dataclass(frozen=True)
class DayCost:
    day: date
    amount: Decimal


@dataclass(frozen=True)
class Bar:
    day: date
    amount: Decimal
    x: int
    y: int
    width: int
    height: int

    @property
    def middle(self) -> int:
        return self.x + self.width // 2


@dataclass(frozen=True)
class Chart:
    """Geometry for an inline SVG bar chart: no chart library, nothing fetched."""

    width: int
    height: int
    baseline: int
    bars: list[Bar]


_BAR, _GAP, _PLOT, _TOP = 44, 16, 120, 22


def chart_make(*, days: list[DayCost]) -> Chart:
    """Bars scaled to the dearest day; any spend gets at least a sliver so it shows."""
    peak = max((d.amount for d in days), default=ZERO)
    baseline = _TOP + _PLOT
    bars = []
    for i, d in enumerate(days):
        height = 0
        if d.amount > 0 and peak > 0:
            height = max(2, int(d.amount / peak * _PLOT))
        bars.append(Bar(day=d.day, amount=d.amount, x=_GAP // 2 + i * (_BAR + _GAP),
                        y=baseline - height, width=_BAR, height=height))
    return Chart(width=len(days) * (_BAR + _GAP), height=baseline + 36, baseline=baseline,
                 bars=bars)


# --- a member's weekly report --------------------------------------------------


@dataclass(frozen=True)
class WorkspaceCost:
    workspace_id: int | None  # None: staff adjustments and credits
    label: str
    amount: Decimal


@dataclass(frozen=True)
class WeeklyReport(_TermShare):
    membership: Membership
    start: date  # first of the seven days, in the course's zone
    last_day: date
    end: datetime
    days: list[DayCost]
    per_workspace: list[WorkspaceCost]
    week_total: Decimal
    month_start: date
    month_to_date: Decimal
    term_to_date: Decimal
    burn_per_week: Decimal
    projected_term_total: Decimal | None
    cap: Decimal

    @property
    def course(self) -> Course:
        return self.membership.course

    @property
    def remaining(self) -> Decimal:
        return self.cap - self.term_to_date

    @property
    def projected_over_cap(self) -> bool:
        return self.projected_term_total is not None and self.projected_term_total > self.cap

    @property
    def chart(self) -> Chart:
        return chart_make(days=self.days)


WorkspaceNamer = Callable[[list[int]], Mapping[int, str]]
_namers: list[WorkspaceNamer] = []


def workspace_namer_register(namer: WorkspaceNamer) -> None:
    """Let the app that owns workspaces name them in reports (billing knows only ids)."""
    if namer not in _namers:
        _namers.append(namer)


def _workspace_names(ids: list[int]) -> dict[int, str]:
    names: dict[int, str] = {}
    for namer in _namers:
        names.update(namer(ids))
    return names


def _workspace_label(workspace_id: int | None, names: Mapping[int, str]) -> str:
    if workspace_id is None:
        return "Adjustments and credits"
    return names.get(workspace_id) or f"workspace #{workspace_id}"


def member_weekly_report(*, membership: Membership, end: datetime,
                         workspace_names: Mapping[int, str] | None = None) -> WeeklyReport:
    """The seven local days up to `end`, with the figures an advisor asks for.

    Billing knows workspaces by id only; their names come from
    `workspace_names` or the namer provisioning registers (one query more).
    Five queries at most, however many lines the member has.
    """
    course = membership.course
    zone = course.zone
    last = _last_day(end, zone)
    start, month_start = last - timedelta(days=6), last.replace(day=1)
    window = _window_spend(lines=LedgerEntry.objects.filter(membership=membership), zone=zone,
                           first_day=min(start, month_start), end=end, key="workspace_id")
    per_day: dict[date, Decimal] = defaultdict(Decimal)
    per_ws: dict[int | None, Decimal] = defaultdict(Decimal)
    month = ZERO
    for (ws, day), amount in window.by_day.items():
        if day >= start:
            per_day[day] += amount
            per_ws[ws] += amount
        if day >= month_start:
            month += amount
    days = [DayCost(day=start + timedelta(days=i), amount=per_day[start + timedelta(days=i)])
            for i in range(7)]
    names = workspace_names if workspace_names is not None else _workspace_names(
        [ws for ws in per_ws if ws is not None])
    workspaces = [WorkspaceCost(workspace_id=ws, label=_workspace_label(ws, names), amount=amount)
                  for ws, amount in sorted(per_ws.items(),
                                           key=lambda item: (-item[1], item[0] or 0))]
    term = sum(window.before.values(), ZERO) + sum(window.by_day.values(), ZERO)
    burn, projected = _pace(spent=term, since=course.starts_at or membership.created_at, end=end,
                            starts_at=course.starts_at, ends_at=course.ends_at)
    return WeeklyReport(membership=membership, start=start, last_day=last, end=end, days=days,
                        per_workspace=workspaces, week_total=sum(per_day.values(), ZERO),
                        month_start=month_start, month_to_date=month, term_to_date=term,
                        burn_per_week=burn, projected_term_total=projected,
                        cap=ledger.member_cap(membership))


# --- a course's weekly report --------------------------------------------------


@dataclass(frozen=True)
class MemberWeek(_TermShare):
    membership: Membership
    week: Decimal
    term_to_date: Decimal
    cap: Decimal



@dataclass(frozen=True)
class SectionWeek(_TermShare):
    section: str
    members: int
    week: Decimal
    term_to_date: Decimal
    cap: Decimal



@dataclass(frozen=True)
class CourseWeeklyReport:
    course: Course
    start: date
    last_day: date
    end: datetime
    days: list[DayCost]
    rows: list[MemberWeek]  # every member not revoked, by section then email
    sections: list[SectionWeek]  # students only
    week_total: Decimal
    month_start: date
    month_to_date: Decimal
    term_to_date: Decimal
    burn_per_week: Decimal
    projected_term_total: Decimal | None

    @property
    def budget_total(self) -> Decimal:
        return self.course.budget_total

    @property
    def budget_share(self) -> Decimal | None:
        return self.term_to_date / self.budget_total if self.budget_total > 0 else None

    @property
    def over_80(self) -> list[MemberWeek]:
        """Members at 80 % of their cap or more, the most used first."""
        return sorted((r for r in self.rows if r.share >= Decimal("0.8")),
                      key=lambda r: (-r.share, r.membership.email))

    @property
    def biggest(self) -> list[MemberWeek]:
        """This week's five biggest spenders."""
        return sorted((r for r in self.rows if r.week > 0),
                      key=lambda r: (-r.week, r.membership.email))[:5]

    @property
    def chart(self) -> Chart:
        return chart_make(days=self.days)


def course_weekly_report(*, course: Course, end: datetime) -> CourseWeeklyReport:
    """The course's seven local days up to `end`: per day, per member, per section.

    Four queries whatever the class size (members, then the window's three).
    Day and course totals include every line, a revoked member's too.
    """
    zone = course.zone
    last = _last_day(end, zone)
    start, month_start = last - timedelta(days=6), last.replace(day=1)
    members = list(Membership.objects.filter(course=course)
                   .exclude(status=Membership.Status.REVOKED).order_by("section", "email"))
    window = _window_spend(lines=LedgerEntry.objects.filter(course=course), zone=zone,
                           first_day=min(start, month_start), end=end, key="membership_id")
    per_day: dict[date, Decimal] = defaultdict(Decimal)
    week: dict[int, Decimal] = defaultdict(Decimal)
    term: dict[int, Decimal] = defaultdict(Decimal, window.before)
    month = ZERO
    for (member_id, day), amount in window.by_day.items():
        term[member_id] += amount
        if day >= start:
            per_day[day] += amount
            week[member_id] += amount
        if day >= month_start:
            month += amount
    rows = []
    for m in members:
        m.course = course  # one course for all: no query per row
        rows.append(MemberWeek(membership=m, week=week.get(m.pk, ZERO),
                               term_to_date=term.get(m.pk, ZERO), cap=ledger.member_cap(m)))
    by_section: dict[str, list[MemberWeek]] = defaultdict(list)
    for row in rows:
        if row.membership.role == Membership.Role.STUDENT:
            by_section[row.membership.section or "—"].append(row)
    sections = [SectionWeek(section=name, members=len(group),
                            week=sum((r.week for r in group), ZERO),
                            term_to_date=sum((r.term_to_date for r in group), ZERO),
                            cap=sum((r.cap for r in group), ZERO))
                for name, group in sorted(by_section.items())]
    total = sum(term.values(), ZERO)
    burn, projected = _pace(spent=total, since=course.starts_at or course.created_at, end=end,
                            starts_at=course.starts_at, ends_at=course.ends_at)
    days = [DayCost(day=start + timedelta(days=i), amount=per_day[start + timedelta(days=i)])
            for i in range(7)]
    return CourseWeeklyReport(course=course, start=start, last_day=last, end=end, days=days,
                              rows=rows, sections=sections, week_total=sum(per_day.values(), ZERO),
                              month_start=month_start, month_to_date=month, term_to_date=total,
                              burn_per_week=burn, projected_term_total=projected)


# --- CSV -----------------------------------------------------------------------


def _cell(text: str) -> str:
    """Roster text goes into spreadsheets: never let it start a formula."""
    return f"'{text}" if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


def _usd(amount: Decimal) -> str:
    return str(amount.quantize(_SIX))


def _csv(rows: Iterable[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue()


def member_report_csv(*, report: WeeklyReport) -> str:
    """One row per day, then one per workspace; amounts as exact decimal strings."""
    rows: list[list] = [["kind", "date", "workspace_id", "workspace", "amount_usd"]]
    rows += [["day", d.day.isoformat(), "", "", _usd(d.amount)] for d in report.days]
    rows += [["workspace", "", "" if w.workspace_id is None else w.workspace_id, _cell(w.label),
              _usd(w.amount)] for w in report.per_workspace]
    return _csv(rows)


def course_report_csv(*, report: CourseWeeklyReport) -> str:
    """Rows per day, per member and per section under one header."""
    rows: list[list] = [["kind", "date", "membership_id", "name", "email", "role", "section",
                         "week_usd", "term_to_date_usd", "cap_usd", "share"]]
    rows += [["day", d.day.isoformat(), "", "", "", "", "", _usd(d.amount), "", "", ""]
             for d in report.days]
    for r in report.rows:
        m = r.membership
        rows.append(["member", "", m.pk, _cell(m.name), _cell(m.email), m.role, _cell(m.section),
                     _usd(r.week), _usd(r.term_to_date), str(r.cap),
                     str(r.share.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))])
    for s in report.sections:
        rows.append(["section", "", "", "", "", "", _cell(s.section), _usd(s.week),
                     _usd(s.term_to_date), str(s.cap),
                     str(s.share.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))])
    return _csv(rows)


# --- email ---------------------------------------------------------------------


@dataclass
class DeliverySummary:
    sent: int = 0
    skipped: int = 0  # already sent this week
    failed: int = 0  # left for the next run


def week_monday(*, course: Course, at: datetime) -> date:
    """The Monday of `at`'s week in the course's zone: the key of "once a week"."""
    local = at.astimezone(course.zone).date()
    return local - timedelta(days=local.weekday())


def _link(name: str, pk: int) -> str:
    return settings.SITE_URL.rstrip("/") + reverse(name, args=[pk])


def _message(*, subject: str, template: str, context: dict, to: str) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(subject=subject, to=[to],
                                     body=render_to_string(f"{template}.txt", context))
    message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    return message


def _deliver(*, kind: str, recipient: Membership, week_start: date,
             message: EmailMultiAlternatives, summary: DeliverySummary) -> None:
    """Record, then send, in one transaction: a failed send leaves no record, so
    the next run tries again; a second run meets the unique row and skips."""
    try:
        with transaction.atomic():
            ReportDelivery.objects.create(kind=kind, recipient=recipient, week_start=week_start,
                                          email=message.to[0])
            message.send()
    except IntegrityError:
        summary.skipped += 1
    except OSError:
        log.exception("weekly report to %s not sent", message.to[0])
        summary.failed += 1
    else:
        summary.sent += 1


def member_report_email(*, report: WeeklyReport) -> EmailMultiAlternatives:
    m = report.membership
    context = {"report": report, "membership": m, "course": m.course,
               "link": _link("member-report", m.pk)}
    subject = (f"{m.course.code} weekly costs {report.start:%d %b}–{report.last_day:%d %b}: "
               f"${report.week_total:,.2f}")
    return _message(subject=subject, template="billing/email/member_report", context=context,
                    to=m.email)


def course_report_email(*, report: CourseWeeklyReport, to: str) -> EmailMultiAlternatives:
    context = {"report": report, "course": report.course,
               "link": _link("course-report", report.course.pk)}
    subject = (f"{report.course.code} course costs {report.start:%d %b}–"
               f"{report.last_day:%d %b}: ${report.week_total:,.2f}")
    return _message(subject=subject, template="billing/email/course_report", context=context,
                    to=to)


def weekly_reports_send(*, now: datetime) -> DeliverySummary:
    """Email this week's reports for every active course, each at most once.

    Every active member who has spent anything in the course gets their own
    report; every active instructor gets the course report. Reports already
    recorded for this week are not even built.
    """
    summary = DeliverySummary()
    Kind = ReportDelivery.Kind
    for course in Course.objects.filter(status=Course.Status.ACTIVE).order_by("pk"):
        monday = week_monday(course=course, at=now)
        done = set(ReportDelivery.objects.filter(recipient__course=course, week_start=monday)
                   .values_list("kind", "recipient_id"))
        spenders = (Membership.objects.active().filter(course=course)
                    .filter(pk__in=LedgerEntry.objects.filter(_SPEND, course=course)
                            .values("membership_id"))
                    .order_by("email"))
        for member in spenders:
            if (Kind.MEMBER, member.pk) in done:
                summary.skipped += 1
                continue
            member.course = course
            report = member_weekly_report(membership=member, end=now)
            _deliver(kind=Kind.MEMBER, recipient=member, week_start=monday,
                     message=member_report_email(report=report), summary=summary)
        course_report = None
        for instructor in (Membership.objects.active()
                           .filter(course=course, role=Membership.Role.INSTRUCTOR)
                           .order_by("email")):
            if (Kind.COURSE, instructor.pk) in done:
                summary.skipped += 1
                continue
            if course_report is None:  # built once per course, only if someone needs it
                course_report = course_weekly_report(course=course, end=now)
            _deliver(kind=Kind.COURSE, recipient=instructor, week_start=monday,
                     message=course_report_email(report=course_report, to=instructor.email),
                     summary=summary)
    return summary
