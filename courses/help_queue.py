"""Office hours: students raise a help request, the course's TAs claim and
resolve it from a live queue.

Every change of status is a compare-and-swap on the row (`filter(pk=…,
status=expected).update(…)`), so when two TAs click Claim together exactly
one wins and the other is told who did. A student has at most one waiting
request (open or claimed), held by a partial unique index as well as by the
check here. Live updates go out after commit to the queue's watchers and to
the student's own dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.http import Http404
from django.utils import timezone

from courses.inbox import InboxError, workspace_pick
from courses.models import Course, HelpRequest, Membership
from courses.policy import Action, membership_may
from courses.services import membership_get_active

Status = HelpRequest.Status
SUMMARY_MAX = HelpRequest._meta.get_field("summary").max_length
TEXT_MAX = 5_000
RECENT_HOURS = 24  # a finished request stays on the student's dashboard this long


class HelpError(Exception):
    """A request refused; `errors` maps each field (or "" for the whole form) to its
    message. `status` is the HTTP status a page or the API answers with."""

    def __init__(self, errors: dict[str, str], status: int = 400):
        super().__init__(" ".join(errors.values()))
        self.errors = errors
        self.status = status


def user_display(user) -> str:
    if user is None:
        return "Someone"
    return user.get_full_name() or user.email or user.get_username()


# --- who ---------------------------------------------------------------------


def help_actor(*, user, course_id: int, action: Action) -> Membership:
    """The user's membership if they may `action` in the course: not a member → 404,
    a member whose role does not allow it → 403. Shared by pages, API and socket."""
    actor = membership_get_active(user=user, course_id=course_id)
    if actor is None:
        raise Http404("No such course.")
    if not membership_may(actor=actor, action=action):
        if action is Action.OPEN_HELP_REQUEST:
            raise PermissionDenied("Help requests are for the course's students.")
        raise PermissionDenied("Only course staff see the help queue.")
    return actor


def help_request_get(*, course_id: int, request_id: int) -> HelpRequest:
    found = (HelpRequest.objects.select_related("membership", "claimed_by")
             .filter(pk=request_id, course_id=course_id).first())
    if found is None:
        raise Http404("No such help request.")
    return found


# --- the student ---------------------------------------------------------------


def help_request_open(*, actor: Membership, summary: str, details: str = "",
                      workspace_id: int | None = None) -> HelpRequest:
    """A student asks for help ("my training crashes"), optionally about one of
    their workspaces. One waiting request at a time."""
    if not membership_may(actor=actor, action=Action.OPEN_HELP_REQUEST, owner=actor):
        raise PermissionDenied("Help requests are for the course's students.")
    errors: dict[str, str] = {}
    summary = " ".join(summary.split())
    if not summary:
        errors["summary"] = "Say in a few words what is wrong, e.g. “my training crashes”."
    elif len(summary) > SUMMARY_MAX:
        errors["summary"] = (f"Keep it to {SUMMARY_MAX} characters; put the rest in the "
                             "details.")
    details = details.strip()
    if len(details) > TEXT_MAX:
        errors["details"] = f"At most {TEXT_MAX} characters (this is {len(details)})."
    try:
        workspace_id, workspace_name = workspace_pick(membership_id=actor.pk,
                                                      workspace_id=workspace_id)
    except InboxError:
        errors["workspace"] = "That is not one of your workspaces."
        workspace_name = ""
    if errors:
        raise HelpError(errors)
    already = _already_waiting(actor)
    if already:
        raise already
    try:
        with transaction.atomic():
            request = HelpRequest.objects.create(
                course_id=actor.course_id, membership=actor, summary=summary, details=details,
                workspace_id=workspace_id, workspace_name=workspace_name)
            _broadcast_on_commit(request)
    except IntegrityError:  # a second click raced the first
        raise _already_waiting(actor) or HelpError(
            {"": "You already have a request waiting."}, status=409) from None
    return request


def _already_waiting(actor: Membership) -> HelpError | None:
    waiting = HelpRequest.objects.waiting().filter(membership=actor).first()
    if waiting is None:
        return None
    return HelpError({"": f"You already have a request waiting (“{waiting.summary}”). "
                          "Cancel it first if you want to ask something else."}, status=409)


def help_request_cancel(*, request: HelpRequest, actor: Membership) -> HelpRequest:
    """The student withdraws their own waiting request."""
    if request.membership_id != actor.pk:
        raise PermissionDenied("Only the student who asked may cancel a request.")
    return _swap(request, frm=HelpRequest.WAITING, status=Status.CANCELLED,
                 resolved_at=timezone.now())


# --- the staff ---------------------------------------------------------------


def _may_handle(request: HelpRequest, actor: Membership) -> None:
    if actor.course_id != request.course_id or not membership_may(
            actor=actor, action=Action.HANDLE_HELP):
        raise PermissionDenied("Only course staff handle help requests.")


def help_request_claim(*, request: HelpRequest, actor: Membership) -> HelpRequest:
    """Take an open request: the queue shows who is on it. Exactly one of two
    simultaneous claims wins; the other gets HelpError (409) naming the winner."""
    _may_handle(request, actor)
    return _swap(request, frm=(Status.OPEN,), status=Status.CLAIMED, claimed_by=actor.user,
                 claimed_at=timezone.now())


def help_request_release(*, request: HelpRequest, actor: Membership) -> HelpRequest:
    """Put a claimed request back in the queue, for another TA to take."""
    _may_handle(request, actor)
    return _swap(request, frm=(Status.CLAIMED,), status=Status.OPEN, claimed_by=None,
                 claimed_at=None)


def help_request_resolve(*, request: HelpRequest, actor: Membership,
                         note: str = "") -> HelpRequest:
    """Close the request with what fixed it (the student sees the note). A request
    nobody claimed can be resolved too: it counts as claimed by the resolver."""
    _may_handle(request, actor)
    note = note.strip()
    if len(note) > TEXT_MAX:
        raise HelpError({"note": f"At most {TEXT_MAX} characters (this is {len(note)})."})
    now = timezone.now()
    fields = {"status": Status.RESOLVED, "resolved_by": actor.user, "resolved_at": now,
              "resolution": note}
    if request.status == Status.OPEN:
        fields |= {"claimed_by": actor.user, "claimed_at": now}
    return _swap(request, frm=(request.status,) if request.is_waiting else HelpRequest.WAITING,
                 **fields)


def _swap(request: HelpRequest, *, frm, **fields) -> HelpRequest:
    with transaction.atomic():
        changed = HelpRequest.objects.filter(pk=request.pk, status__in=list(frm)).update(**fields)
        request.refresh_from_db()
        if not changed:
            raise HelpError({"": _why_not(request)}, status=409)
        _broadcast_on_commit(request)
    return request


def _why_not(request: HelpRequest) -> str:
    """Why a change lost its race, in the words the loser needs."""
    if request.status == Status.CLAIMED:
        return f"{user_display(request.claimed_by)} already claimed it."
    if request.status == Status.RESOLVED:
        return f"{user_display(request.resolved_by)} already resolved it."
    if request.status == Status.CANCELLED:
        return f"{request.membership.display_name} cancelled the request."
    return "Nobody has claimed it (it is back in the queue)."


def _broadcast_on_commit(request: HelpRequest) -> None:
    from courses.live import broadcast_course_stats, broadcast_help_queue, broadcast_member_help

    course_id, membership_id = request.course_id, request.membership_id
    transaction.on_commit(lambda: broadcast_help_queue(course_id=course_id))
    transaction.on_commit(lambda: broadcast_course_stats(course_id=course_id))
    transaction.on_commit(lambda: broadcast_member_help(membership_id=membership_id))


# --- lists ---------------------------------------------------------------------


def help_queue_list(*, course: Course) -> list[HelpRequest]:
    """Waiting requests, oldest first (the order they are helped in); one query."""
    rows = list(HelpRequest.objects.waiting().filter(course=course)
                .select_related("membership", "claimed_by").order_by("created_at", "pk"))
    for row in rows:
        row.membership.course = course
    return rows


@dataclass(frozen=True)
class QueueCounts:
    open: int = 0
    claimed: int = 0

    @property
    def waiting(self) -> int:
        return self.open + self.claimed


def help_queue_counts(*, course_ids: list[int]) -> dict[int, QueueCounts]:
    """Open and claimed requests per course, in one query."""
    counts = {cid: QueueCounts() for cid in course_ids}
    if not course_ids:
        return counts
    for row in (HelpRequest.objects.waiting().filter(course_id__in=course_ids)
                .values("course_id")
                .annotate(open=Count("pk", filter=Q(status=Status.OPEN)),
                          claimed=Count("pk", filter=Q(status=Status.CLAIMED))).order_by()):
        counts[row["course_id"]] = QueueCounts(open=row["open"], claimed=row["claimed"])
    return counts


def help_requests_current(*, membership_ids: list[int], now=None) -> dict[int, HelpRequest]:
    """Each member's latest request if it is still waiting or finished within the
    last day (so the student sees the TA's note); one query."""
    if not membership_ids:
        return {}
    now = now or timezone.now()
    recent = now - timedelta(hours=RECENT_HOURS)
    rows = (HelpRequest.objects.filter(membership_id__in=membership_ids)
            .filter(Q(status__in=HelpRequest.WAITING) | Q(resolved_at__gte=recent))
            .select_related("claimed_by", "resolved_by")
            .order_by("membership_id", "-created_at", "-pk").distinct("membership_id"))
    return {r.membership_id: r for r in rows}
