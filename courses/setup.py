"""Setting up a course: create it, change its settings, copy it for next term.

The rules live here rather than in a form so that the wizard, the settings
page and the API refuse the same input with the same field messages.
Approved templates are provisioning's (see provisioning/approvals.py); lens/
composes both in one transaction.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import DecimalField, Sum, Value
from django.db.models.functions import Coalesce
from django.http import Http404

from courses.models import Course, Membership
from courses.policy import membership_may
from courses.services import membership_get_active

CREATE_PERMISSION = "courses.add_course"

# Stored as they are on Course; the term is given as local dates (see term_bounds).
_STORED = ("code", "title", "term_label", "kind", "time_zone", "budget_total",
           "default_member_budget", "expected_students", "max_concurrent_workspaces",
           "max_daily_cost", "idle_stop_minutes", "term_end_stop", "term_end_archive",
           "term_end_revoke", "term_end_report", "retention_days", "head_ta_may_approve",
           "workshop_duration_minutes", "workshop_extension_minutes",
           "workshop_max_participants")
# The workshop's start is given as a local (naive) date and time, like the term's dates.
WORKSHOP_FIELDS = ("workshop_start", *_STORED[-3:])
SETTINGS_FIELDS = (*_STORED[:5], "start_date", "end_date", *_STORED[5:-3], *WORKSHOP_FIELDS)

DEFAULTS: dict[str, object] = {
    "term_label": "", "kind": Course.Kind.CLASS, "time_zone": "UTC",
    "budget_total": Decimal("0"), "default_member_budget": Decimal("0"),
    "expected_students": None, "max_concurrent_workspaces": 1, "max_daily_cost": None,
    "idle_stop_minutes": None, "term_end_stop": True, "term_end_archive": True,
    "term_end_revoke": True, "term_end_report": True, "retention_days": 365,
    "head_ta_may_approve": False,
    "workshop_start": None, "workshop_duration_minutes": None,
    "workshop_extension_minutes": None, "workshop_max_participants": None,
}

REQUIRED = {
    "code": "Give the course a short code, e.g. CS229-F26.",
    "title": "Give the course a title.",
    "time_zone": "Choose the course's time zone.",
    "start_date": "When does the term start?",
    "end_date": "When does the term end (the last day)?",
}
NEGATIVE_MONEY = "Money cannot be negative."
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
TIME_ZONES = frozenset(zoneinfo.available_timezones())
LAST_SECOND = time(23, 59, 59)
WORKSHOP_MAX_MINUTES = 7 * 24 * 60


def _usd(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def zone_is_known(name: str) -> bool:
    return name in TIME_ZONES


def term_bounds(*, start: date, end: date, time_zone: str) -> tuple[datetime, datetime]:
    """The term as aware UTC: from midnight local on the first day to 23:59:59
    local on the last day, so "ends December 13" means the whole of that day
    wherever the course is, whatever daylight saving does that week."""
    zone = zoneinfo.ZoneInfo(time_zone)
    starts = datetime.combine(start, time.min, tzinfo=zone)
    ends = datetime.combine(end, LAST_SECOND, tzinfo=zone)
    return starts.astimezone(UTC), ends.astimezone(UTC)


def course_settings_of(course: Course) -> dict[str, object]:
    """A course's settings in the shape the services take (dates local to the course)."""
    values = {name: getattr(course, name) for name in _STORED}
    values["start_date"] = course.starts_at.astimezone(course.zone).date() if course.starts_at \
        else None
    values["end_date"] = course.ends_at.astimezone(course.zone).date() if course.ends_at \
        else None
    values["workshop_start"] = (
        course.workshop_starts_at.astimezone(course.zone).replace(tzinfo=None)
        if course.workshop_starts_at else None)
    return values


def local_instant(value: datetime, time_zone: str) -> datetime:
    """A wall-clock time in the course's zone as aware UTC."""
    return value.replace(tzinfo=zoneinfo.ZoneInfo(time_zone)).astimezone(UTC)


def _workshop_errors(values: Mapping[str, object], fail) -> None:
    """Only a workshop needs (and is judged on) its start, duration and extension."""
    def given(name: str) -> bool:
        return name in values and values[name] not in (None, "")

    if "workshop_start" in values and not given("workshop_start"):
        fail("workshop_start", "When does the workshop start (local date and time)?")
    if "workshop_duration_minutes" in values and not given("workshop_duration_minutes"):
        fail("workshop_duration_minutes", "How long is the workshop, e.g. 180 minutes?")
    elif given("workshop_duration_minutes") and not (
            15 <= values["workshop_duration_minutes"] <= WORKSHOP_MAX_MINUTES):
        fail("workshop_duration_minutes", "Between 15 minutes and 7 days (10,080 minutes).")
    if given("workshop_extension_minutes") and not (
            0 <= values["workshop_extension_minutes"] <= WORKSHOP_MAX_MINUTES):
        fail("workshop_extension_minutes",
             "Between 0 and 10,080 minutes (7 days), or empty for none.")
    if given("workshop_max_participants") and not (
            1 <= values["workshop_max_participants"] <= 10000):
        fail("workshop_max_participants", "Between 1 and 10,000, or empty for no limit.")


def course_settings_errors(*, values: Mapping[str, object],
                           course: Course | None = None) -> dict[str, list[str]]:
    """Field → messages for whatever in `values` breaks a rule.

    Fields missing from `values` are not judged (a form leaves out the ones it
    could not even parse, which already carry their own message).
    """
    errors: dict[str, list[str]] = {}

    def fail(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    def given(name: str) -> bool:
        return name in values and values[name] not in (None, "")

    for name, message in REQUIRED.items():
        if name in values and values[name] in (None, ""):
            fail(name, message)

    if given("code"):
        code = str(values["code"]).strip()
        if not _CODE.match(code):
            fail("code", "Use letters, digits, spaces, dots, dashes or underscores, "
                         "starting with a letter or digit.")
        else:
            others = Course.objects.filter(code__iexact=code)
            if course is not None:
                others = others.exclude(pk=course.pk)
            if others.exists():
                fail("code", f"There is already a course with the code {code} "
                             "(codes ignore upper and lower case).")
    if given("kind") and values["kind"] not in Course.Kind.values:
        fail("kind", "Choose class, lab, workshop or personal.")
    if given("time_zone") and not zone_is_known(str(values["time_zone"])):
        fail("time_zone", f"Unknown time zone “{values['time_zone']}”. "
                          "Use a name such as America/New_York or Europe/Berlin.")
    if given("start_date") and given("end_date") and values["end_date"] < values["start_date"]:
        fail("end_date", f"The term cannot end before it starts "
                         f"({values['start_date']:%b %-d, %Y}).")

    for name in ("budget_total", "default_member_budget", "max_daily_cost"):
        if given(name) and values[name] < 0:
            fail(name, NEGATIVE_MONEY)
    if (given("budget_total") and given("default_member_budget")
            and values["budget_total"] > 0
            and values["default_member_budget"] > values["budget_total"] >= 0):
        fail("default_member_budget",
             f"The default per-student budget ({_usd(values['default_member_budget'])}) is "
             f"more than the whole course budget ({_usd(values['budget_total'])}).")
    if given("max_daily_cost") and values["max_daily_cost"] == 0:
        fail("max_daily_cost", "Leave it empty for no daily cap; $0 would refuse every launch.")

    if given("expected_students") and not 0 <= values["expected_students"] <= 10000:
        fail("expected_students", "Between 0 and 10,000 students.")
    if given("max_concurrent_workspaces") and not 0 <= values["max_concurrent_workspaces"] <= 20:
        fail("max_concurrent_workspaces", "Between 0 (no limit) and 20 workspaces.")
    if given("idle_stop_minutes") and not 5 <= values["idle_stop_minutes"] <= 1440:
        fail("idle_stop_minutes", "Between 5 and 1,440 minutes (a day), or empty to "
                                  "leave idle machines running.")
    if given("retention_days") and not 0 <= values["retention_days"] <= 3650:
        fail("retention_days", "Between 0 and 3,650 days (ten years).")
    if values.get("kind") == Course.Kind.WORKSHOP:
        _workshop_errors(values, fail)
    return errors


def _check(values: Mapping[str, object], course: Course | None) -> None:
    errors = course_settings_errors(values=values, course=course)
    if errors:
        raise ValidationError(errors)


def _apply(course: Course, values: Mapping[str, object]) -> None:
    for name in _STORED:
        setattr(course, name, values[name])
    course.code, course.title = str(course.code).strip(), str(course.title).strip()
    course.starts_at, course.ends_at = term_bounds(
        start=values["start_date"], end=values["end_date"], time_zone=course.time_zone)
    start = values.get("workshop_start")
    course.workshop_starts_at = local_instant(start, course.time_zone) if start else None
    course.workshop_access_ends_at = None
    if course.kind == Course.Kind.WORKSHOP:
        if not course.access_code:
            from courses.workshops import access_code_new  # it imports this module

            course.access_code = access_code_new()
        if course.workshop_ends_at is not None:
            course.workshop_access_ends_at = course.workshop_ends_at + timedelta(
                minutes=course.workshop_extension_minutes or 0)


def _save_new(course: Course) -> None:
    """Save, turning a lost race for the same code into the same field message."""
    try:
        with transaction.atomic():
            course.save()
    except IntegrityError as exc:
        if "course_code_unique_ci" not in str(exc):
            raise
        raise ValidationError({"code": [f"There is already a course with the code "
                                        f"{course.code} (codes ignore upper and lower case)."]}
                              ) from exc


def _instructor_ensure(course: Course, user) -> Membership:
    membership, _ = Membership.objects.update_or_create(
        course=course, user=user,
        defaults={"email": user.email, "name": user.get_full_name(),
                  "role": Membership.Role.INSTRUCTOR, "status": Membership.Status.ACTIVE})
    return membership


def course_create(*, creator, values: Mapping[str, object]) -> Course:
    """Create a course from the wizard's settings; the creator becomes its instructor.

    Only people with the `courses.add_course` permission (or superusers) may.
    Raises ValidationError with field messages.
    """
    if not creator.has_perm(CREATE_PERMISSION):
        raise PermissionDenied("You may not create courses.")
    merged = {**DEFAULTS, **{k: v for k, v in values.items() if k in SETTINGS_FIELDS}}
    for name in REQUIRED:
        merged.setdefault(name, None)
    _check(merged, None)
    with transaction.atomic():
        course = Course(status=Course.Status.ACTIVE)
        _apply(course, merged)
        _save_new(course)
        _instructor_ensure(course, creator)
    return course


def course_update(*, course: Course, values: Mapping[str, object]) -> Course:
    """Change some or all settings; what `values` leaves out stays as it is.

    Changing only the time zone keeps the term's local dates and moves the
    UTC instants with them. The caller checks the actor's role.
    """
    merged = {**course_settings_of(course),
              **{k: v for k, v in values.items() if k in SETTINGS_FIELDS}}
    _check(merged, course)
    _apply(course, merged)
    try:
        with transaction.atomic():
            course.save()
    except IntegrityError as exc:
        if "course_code_unique_ci" not in str(exc):
            raise
        raise ValidationError({"code": ["Someone just took this code."]}) from exc
    return course


def course_duplicate(*, source: Course, creator, values: Mapping[str, object]) -> Course:
    """The same course for another term: settings and staff, not students or money.

    `values` gives at least the new code, term label and dates. Staff keep
    their roles (invited again when they have not signed in yet); the creator
    is the new course's instructor. Approved templates are copied by
    provisioning (lens composes the two).
    """
    if not creator.has_perm(CREATE_PERMISSION):
        raise PermissionDenied("You may not create courses.")
    merged = {**course_settings_of(source),
              **{k: v for k, v in values.items() if k in SETTINGS_FIELDS}}
    _check(merged, None)
    with transaction.atomic():
        course = Course(status=Course.Status.ACTIVE, region=source.region,
                        duplicated_from=source)
        _apply(course, merged)
        _save_new(course)
        staff = (source.memberships.exclude(role=Membership.Role.STUDENT)
                 .exclude(status=Membership.Status.REVOKED).order_by("pk"))
        Membership.objects.bulk_create([
            Membership(course=course, user_id=m.user_id, email=m.email, name=m.name,
                       role=m.role, section=m.section, budget_cap=m.budget_cap,
                       status=(Membership.Status.ACTIVE if m.user_id
                               else Membership.Status.INVITED))
            for m in staff
            if m.user_id != creator.pk and m.email.lower() != (creator.email or "").lower()])
        _instructor_ensure(course, creator)
    return course


@dataclass(frozen=True)
class BudgetPlan:
    """What the wizard's summary shows: the planned total against the course budget."""

    budget_total: Decimal
    per_student: Decimal
    expected_students: int
    planned: Decimal  # expected students × default per-student budget
    enrolled: int | None = None  # students on the roster (existing course only)
    enrolled_caps: Decimal | None = None  # their caps (own cap or the default), summed
    warnings: list[str] = field(default_factory=list)


def course_budget_plan(*, budget_total: Decimal | None, per_student: Decimal | None,
                       expected_students: int | None,
                       course: Course | None = None) -> BudgetPlan:
    """Total = students × default, and a warning when caps add up to more than
    the course budget (allowed: not everyone spends their cap, but the
    course total then stops launches before some students reach theirs)."""
    total = budget_total if budget_total is not None and budget_total >= 0 else Decimal(0)
    each = per_student if per_student is not None and per_student >= 0 else Decimal(0)
    students = expected_students if expected_students and expected_students > 0 else 0
    planned = each * students
    warnings = []
    enrolled = enrolled_caps = None
    if total and planned > total:
        warnings.append(f"{students} students × {_usd(each)} = {_usd(planned)} is more than "
                        f"the course budget of {_usd(total)}: the course total can run out "
                        "before every student reaches their cap.")
    if course is not None:
        roster = (Membership.objects.filter(course=course, role=Membership.Role.STUDENT)
                  .exclude(status=Membership.Status.REVOKED))
        agg = roster.aggregate(
            n=Coalesce(Sum(Value(1)), 0),
            caps=Coalesce(Sum(Coalesce("budget_cap", Value(each),
                                       output_field=DecimalField())),
                          Value(Decimal(0)), output_field=DecimalField()))
        enrolled, enrolled_caps = agg["n"], agg["caps"]
        if total and enrolled_caps > total:
            warnings.append(f"The caps of the {enrolled} students on the roster add up to "
                            f"{_usd(enrolled_caps)}, more than the course budget of "
                            f"{_usd(total)}.")
    return BudgetPlan(budget_total=total, per_student=each, expected_students=students,
                      planned=planned, enrolled=enrolled, enrolled_caps=enrolled_caps,
                      warnings=warnings)


def course_actor_get(*, user, course_id: int, action) -> Membership:
    """The user's membership in the course, if their role there allows `action`.

    Not a member (or no such course) → 404, so outsiders learn nothing; a
    member whose role does not allow it → 403. Shared by pages and the API.
    """
    actor = membership_get_active(user=user, course_id=course_id)
    if actor is None:
        raise Http404("No such course.")
    if not membership_may(actor=actor, action=action):
        raise PermissionDenied("Your role in this course does not allow that.")
    return actor
