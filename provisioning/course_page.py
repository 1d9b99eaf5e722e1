"""The professor's course page: every student with their workspaces, spend
against cap and last activity, and the course's recent workspace events.

Built in a fixed number of queries whatever the class size (members,
workspaces, spend, latest events), so a 200-student class costs what a
5-student one does. The same rows feed the live update of one student.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from billing import ledger
from billing.ledger import MemberMoney
from courses.models import Course, Membership
from courses.policy import Action, membership_may
from provisioning.metering import storage_usd_per_hour_of
from provisioning.models import Workspace, WorkspaceEvent
from provisioning.states import State

SORTS = ("name", "spend")
RECENT_EVENTS = 20
_GONE = [State.TERMINATED, State.ARCHIVED]


def course_page_may_view(actor: Membership | None) -> bool:
    """Staff who see the roster and everyone's spend (instructor, head TA, TA) see the
    course page and its live feed; `actor` is the user's membership in that course."""
    return (membership_may(actor=actor, action=Action.VIEW_ROSTER)
            and membership_may(actor=actor, action=Action.VIEW_COURSE_MONEY))


@dataclass(frozen=True)
class StudentRow:
    membership: Membership
    workspaces: list[Workspace]
    money: MemberMoney
    last_activity: datetime | None


def _students(course: Course, *, section: str, membership_ids):
    members = (Membership.objects.filter(course=course, role=Membership.Role.STUDENT)
               .exclude(status=Membership.Status.REVOKED).select_related("user"))
    if section == "-":
        members = members.filter(section="")
    elif section:
        members = members.filter(section__iexact=section)
    if membership_ids is not None:
        members = members.filter(pk__in=list(membership_ids))
    return list(members)


def course_student_rows(*, course: Course, section: str = "", sort: str = "name",
                        membership_ids=None, now: datetime | None = None) -> list[StudentRow]:
    """Active and invited students, filtered by section ("-" = none), sorted by
    name or by spend (highest first); four queries for any number of students.

    Spend is Σ usage + adjustments; the bar's hatched part is what their disks
    will cost to the end of term, from the rates on the workspaces loaded here.
    Open holds are left out: this page shows what was spent, not what is reserved
    for a machine that is just starting.
    """
    now = now or timezone.now()
    members = _students(course, section=section, membership_ids=membership_ids)
    ids = [m.pk for m in members]
    workspaces: dict[int, list[Workspace]] = {pk: [] for pk in ids}
    for w in (Workspace.objects.filter(owner_id__in=ids).exclude(state__in=_GONE)
              .only("owner_id", "name", "state", "stop_reason", "instance_id",
                    "storage_usd_per_hour", "last_activity_at")
              .order_by("created_at", "pk")):
        workspaces[w.owner_id].append(w)
    spend = ledger.members_spend(course_id=course.pk, membership_ids=ids)
    last_event = dict(WorkspaceEvent.objects.filter(workspace__owner_id__in=ids)
                      .values("workspace__owner_id").annotate(at=Max("at"))
                      .values_list("workspace__owner_id", "at").order_by())
    horizon = ledger.storage_horizon(course, now)[0]
    rows = []
    for m in members:
        m.course = course  # one course for all: no query per row
        mine = workspaces[m.pk]
        storage = storage_usd_per_hour_of(mine)
        reserved = (ledger.storage_reserved(course=course, usd_per_hour=storage, now=now)
                    if storage else ledger.ZERO)
        spent = spend.get(m.pk, ledger.ZERO)
        money = MemberMoney(cap=ledger.member_cap(m), spend=spent, committed=spent,
                            reserved=reserved, reserved_until=horizon if storage else None)
        moments = [last_event.get(m.pk), m.user.last_login if m.user else None,
                   *(w.last_activity_at for w in mine)]
        rows.append(StudentRow(membership=m, workspaces=mine, money=money,
                               last_activity=max((t for t in moments if t), default=None)))
    if sort == "spend":
        rows.sort(key=lambda r: (-r.money.spend, r.membership.display_name.lower()))
    else:
        rows.sort(key=lambda r: r.membership.display_name.lower())
    return rows


def course_student_row(*, membership_id: int) -> StudentRow | None:
    """One student's row, for the live update (None: not a listed student)."""
    member = Membership.objects.select_related("course").filter(pk=membership_id).first()
    if member is None:
        return None
    rows = course_student_rows(course=member.course, membership_ids=[membership_id])
    return rows[0] if rows else None


def course_events_recent(*, course_id: int, limit: int = RECENT_EVENTS) -> list[WorkspaceEvent]:
    """The latest workspace state changes in the course: who, what, when."""
    return list(WorkspaceEvent.objects.filter(workspace__owner__course_id=course_id)
                .select_related("workspace__owner", "actor").order_by("-at", "-pk")[:limit])


# --- pending approvals ---------------------------------------------------------
# PLACEHOLDER HOOK: the requests feature (issue 4 item 4: students ask for a
# template or more budget) is not on main yet. When it lands it registers a
# counter here; until then the page says approvals are not available, rather
# than showing a made-up number.

_pending_counter: Callable[[Course], int] | None = None


def pending_approvals_counter_register(counter: Callable[[Course], int] | None) -> None:
    """Set how the course page counts a course's pending requests (one query)."""
    global _pending_counter
    _pending_counter = counter


def pending_approvals_count(*, course: Course) -> int | None:
    """Pending requests in the course, or None while no requests feature is registered."""
    return None if _pending_counter is None else _pending_counter(course)
