"""Requests and approvals: a member asks for a template that needs approval or
for more budget, with a reason; staff approve (optionally until a moment) or
deny; the member hears about it in the app and by email; an approval past its
expiry stops applying.

courses knows neither templates nor money: provisioning registers which of a
course's templates can be asked for (with prices), and lens registers how a
cap moves (billing's ledger line plus provisioning's re-planned budget stop).
Both are registered in the apps' ready(), so courses imports neither.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import Http404
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from courses.models import Approval, Course, Membership
from courses.policy import Action, membership_may
from courses.services import membership_get_active

log = logging.getLogger(__name__)

Kind, Status = Approval.Kind, Approval.Status
REASON_MAX = 1000
NOTE_MAX = Approval._meta.get_field("decision_note").max_length
AMOUNT_MAX = Decimal("10000")
RECENT_DECIDED = 30  # decided requests listed under the pending ones
DECIDED = (Status.APPROVED, Status.DENIED, Status.EXPIRED)


class ApprovalConflict(Exception):
    """Someone else decided or withdrew the request first (the compare-and-swap lost)."""


# --- hooks (registered by provisioning and lens) -------------------------------


@dataclass(frozen=True)
class RequestableTemplate:
    """A template the course approved "on request", as the request form shows it."""

    slug: str
    name: str
    instance_type: str
    usd_per_hour: Decimal | None
    note: str = ""

    @property
    def usd_per_day(self) -> Decimal | None:
        return None if self.usd_per_hour is None else self.usd_per_hour * 24


_requestable: Callable[[Course], list[RequestableTemplate]] | None = None
_cap_shift: Callable[..., Decimal] | None = None


def requestable_templates_register(provider: Callable[[Course], list[RequestableTemplate]]
                                   | None) -> None:
    """How to list a course's templates that need approval (provisioning knows them)."""
    global _requestable
    _requestable = provider


def budget_cap_shift_register(shift: Callable[..., Decimal] | None) -> None:
    """How to move a member's cap by an amount: shift(membership=, delta=, actor=,
    reason=, key=) → the new cap, idempotent by key (lens wires billing and
    provisioning)."""
    global _cap_shift
    _cap_shift = shift


def requestable_templates(*, course: Course) -> list[RequestableTemplate]:
    return [] if _requestable is None else _requestable(course)


def _shift_cap(**kwargs) -> Decimal:
    if _cap_shift is None:
        raise RuntimeError("No budget cap service is registered (lens registers it).")
    return _cap_shift(**kwargs)


# --- asking ------------------------------------------------------------------


def _usd(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def approval_template_granted(*, membership: Membership, template_slug: str,
                              now: datetime | None = None) -> Approval | None:
    """The member's approval for this template that applies at `now`, if any.

    Reads expires_at itself, so an approval stops applying at its expiry even
    before the sweep marks it expired.
    """
    now = now or timezone.now()
    return (Approval.objects.filter(membership=membership, kind=Kind.TEMPLATE,
                                    template_slug=template_slug, status=Status.APPROVED)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .order_by("-decided_at").first())


def approval_templates_granted(*, membership: Membership,
                               now: datetime | None = None) -> dict[str, Approval]:
    """Template slug → the member's approval that applies at `now` (one query)."""
    now = now or timezone.now()
    rows = (Approval.objects.filter(membership=membership, kind=Kind.TEMPLATE,
                                    status=Status.APPROVED)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).order_by("decided_at"))
    return {a.template_slug: a for a in rows}


def approval_request_errors(*, membership: Membership, kind: str, reason: str,
                            template_slug: str = "", amount: Decimal | None = None,
                            now: datetime | None = None) -> dict[str, list[str]]:
    """Field → messages for a request (shared by the page and the API)."""
    errors: dict[str, list[str]] = {}

    def fail(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    reason = (reason or "").strip()
    if not reason:
        fail("reason", "Say why you need it; staff decide on your reason.")
    elif len(reason) > REASON_MAX:
        fail("reason", f"At most {REASON_MAX} characters.")
    if kind == Kind.TEMPLATE:
        options = {t.slug: t for t in requestable_templates(course=membership.course)}
        if not template_slug:
            fail("template_slug", "Choose the template you need.")
        elif template_slug not in options:
            listed = ", ".join(sorted(options)) or "none"
            fail("template_slug", f"{template_slug!r} is not a template {membership.course.code} "
                                  f"approves on request (those are: {listed}).")
        elif approval_template_granted(membership=membership, template_slug=template_slug,
                                       now=now):
            fail("template_slug", f"You already have access to {template_slug}.")
        elif _pending(membership, kind, template_slug):
            fail("template_slug", f"You already asked for {template_slug}; wait for the "
                                  "decision or withdraw that request first.")
    elif kind == Kind.BUDGET:
        if amount is None:
            fail("amount", "How much more do you need, in dollars?")
        elif amount <= 0:
            fail("amount", "Ask for more than $0.")
        elif amount > AMOUNT_MAX:
            fail("amount", f"At most {_usd(AMOUNT_MAX)} in one request.")
        elif amount != amount.quantize(Decimal("0.01")):
            fail("amount", "Whole cents, e.g. 25.50.")
        elif _pending(membership, kind, ""):
            fail("amount", "You already asked for more budget; wait for the decision or "
                           "withdraw that request first.")
    else:
        fail("kind", "Ask for a template or for more budget.")
    return errors


def _pending(membership: Membership, kind: str, template_slug: str) -> bool:
    return Approval.objects.filter(membership=membership, kind=kind,
                                   template_slug=template_slug, status=Status.PENDING).exists()


def approval_request(*, membership: Membership, kind: str, reason: str,
                     template_slug: str = "", amount: Decimal | None = None,
                     now: datetime | None = None) -> Approval:
    """Record a member's request for themselves. Raises ValidationError with
    field messages (one pending request per template, and one for budget)."""
    if not membership_may(actor=membership, action=Action.REQUEST_APPROVAL):
        raise PermissionDenied("Your membership in this course is not active.")
    errors = approval_request_errors(membership=membership, kind=kind, reason=reason,
                                     template_slug=template_slug, amount=amount, now=now)
    if errors:
        raise ValidationError(errors)
    field = "template_slug" if kind == Kind.TEMPLATE else "amount"
    try:
        with transaction.atomic():
            approval = Approval.objects.create(
                course_id=membership.course_id, membership=membership, kind=kind,
                template_slug=template_slug if kind == Kind.TEMPLATE else "",
                amount=amount if kind == Kind.BUDGET else None, reason=reason.strip())
            _staff_tell_on_commit(approval)
            return approval
    except IntegrityError as exc:  # a second click won the race for the one pending request
        if "approval_one_pending" not in str(exc):
            raise
        raise ValidationError({field: ["You already asked for this; wait for the decision "
                                       "or withdraw that request first."]}) from exc


def approval_withdraw(*, approval: Approval, actor: Membership) -> Approval:
    """The member takes back their own pending request."""
    if approval.membership_id != actor.pk:
        raise PermissionDenied("Only the member who asked can withdraw a request.")
    if not Approval.objects.filter(pk=approval.pk, status=Status.PENDING).update(
            status=Status.WITHDRAWN, decided_at=timezone.now()):
        raise ApprovalConflict("This request was already decided or withdrawn.")
    _stats_on_commit(approval.course_id)
    approval.refresh_from_db()
    return approval


# --- deciding ----------------------------------------------------------------


def approval_decide(*, approval: Approval, actor: Membership, approve: bool,
                    expires_at: datetime | None = None, note: str = "",
                    now: datetime | None = None) -> Approval:
    """Approve (until `expires_at`, or for good) or deny a pending request.

    Compare-and-swap on the status, so of two staff deciding at once exactly
    one wins; the other gets ApprovalConflict. A budget approval raises the
    member's cap by the amount asked for, in the same transaction. The member
    is emailed after commit.
    """
    now = now or timezone.now()
    requester = approval.membership
    if actor.course_id != approval.course_id or not membership_may(
            actor=actor, action=Action.DECIDE_APPROVAL, owner=requester):
        raise PermissionDenied("Your role in this course does not allow deciding requests.")
    note = (note or "").strip()
    errors: dict[str, list[str]] = {}
    if len(note) > NOTE_MAX:
        errors["note"] = [f"At most {NOTE_MAX} characters."]
    if approve and expires_at is not None and expires_at <= now:
        errors["expires_at"] = ["The expiry must be in the future; leave it empty for none."]
    if errors:
        raise ValidationError(errors)
    status = Status.APPROVED if approve else Status.DENIED
    grant = approval.amount if approve and approval.kind == Kind.BUDGET else None
    with transaction.atomic():
        changed = Approval.objects.filter(pk=approval.pk, status=Status.PENDING).update(
            status=status, decided_by=actor.user, decided_at=now, decision_note=note,
            expires_at=expires_at if approve else None, granted_amount=grant, seen_at=None)
        if not changed:
            raise ApprovalConflict("Someone already decided this request, or it was withdrawn.")
        if grant:
            _shift_cap(membership=requester, delta=grant, actor=actor.user,
                       reason=f"Approved request #{approval.pk}: {approval.reason}"[:300],
                       key=f"approval:{approval.pk}:grant")
        _notify_on_commit(approval)
    approval.refresh_from_db()
    return approval


def approvals_expire(*, now: datetime | None = None) -> int:
    """Mark approvals past their expiry as expired (beat, every minute).

    A budget grant is taken back from the cap (never below $0); a template
    approval no longer admits new launches; workspaces launched under it keep
    running (stopping them is the member's or staff's call). Safe to run twice
    or concurrently: each row is a compare-and-swap, the cap change is keyed.
    """
    now = now or timezone.now()
    expired = 0
    due = (Approval.objects.filter(status=Status.APPROVED, expires_at__lte=now)
           .select_related("membership__course").order_by("expires_at", "pk"))
    for approval in due:
        with transaction.atomic():
            if not Approval.objects.filter(pk=approval.pk, status=Status.APPROVED).update(
                    status=Status.EXPIRED, seen_at=None):
                continue
            if approval.granted_amount:
                _shift_cap(membership=approval.membership, delta=-approval.granted_amount,
                           actor=None, reason=f"Approval #{approval.pk} expired",
                           key=f"approval:{approval.pk}:expire")
            _notify_on_commit(approval)
        expired += 1
    return expired


# --- notifying -----------------------------------------------------------------


def _notify_on_commit(approval: Approval) -> None:
    from courses import tasks  # the task module imports this one

    approval_id = approval.pk
    transaction.on_commit(lambda: tasks.approval_notify_task.delay(approval_id))
    _stats_on_commit(approval.course_id)


def _stats_on_commit(course_id: int) -> None:
    from courses.live import broadcast_course_stats

    transaction.on_commit(lambda: broadcast_course_stats(course_id=course_id))


def _staff_tell_on_commit(approval: Approval) -> None:
    from courses import tasks

    transaction.on_commit(lambda: tasks.approval_staff_notify_task.delay(approval.pk))
    _stats_on_commit(approval.course_id)


def approval_deciders(*, course: Course) -> list[Membership]:
    """Who may decide the course's requests: its instructors, and its head TAs where
    the course lets them."""
    roles = [Membership.Role.INSTRUCTOR]
    if course.head_ta_may_approve:
        roles.append(Membership.Role.HEAD_TA)
    return list(Membership.objects.active().filter(course=course, role__in=roles)
                .exclude(email=""))


def approval_staff_notify(*, approval_id: int) -> bool:
    """Email the course's deciders about a new request, once (a second run sends nothing).

    Claimed with a compare-and-swap on `staff_notified_at`; a request already
    decided or withdrawn is not announced.
    """
    approval = (Approval.objects.select_related("membership__course")
                .filter(pk=approval_id, status=Status.PENDING).first())
    if approval is None:
        return False
    if not Approval.objects.filter(pk=approval.pk, staff_notified_at=None).update(
            staff_notified_at=timezone.now()):
        return False
    course = approval.membership.course
    to = [m.email for m in approval_deciders(course=course)]
    if not to:
        return False
    context = {"approval": approval, "member": approval.membership, "course": course,
               "approvals_url": settings.SITE_URL.rstrip("/")
               + reverse("course-approvals", args=[course.pk])}
    try:
        EmailMessage(subject=f"{course.code}: {approval.membership.display_name} asks for "
                             f"{approval.what}",
                     body=render_to_string("courses/email/approval_requested.txt", context),
                     to=to).send()
    except Exception:
        Approval.objects.filter(pk=approval.pk).update(staff_notified_at=None)
        raise
    return True


def approval_notify(*, approval_id: int) -> bool:
    """Email the member the request's latest outcome; a second run sends nothing."""
    approval = (Approval.objects.select_related("membership__course", "decided_by")
                .filter(pk=approval_id).first())
    if approval is None or approval.status not in DECIDED:
        return False
    sent_before = approval.notified_status
    if not Approval.objects.filter(pk=approval.pk, status=approval.status,
                                   notified_status=sent_before).update(
                                       notified_status=approval.status):
        return False
    if sent_before == approval.status:  # claimed, but nothing new to say
        return False
    try:
        _message(approval).send()
    except Exception:
        Approval.objects.filter(pk=approval.pk, notified_status=approval.status).update(
            notified_status=sent_before)
        raise
    return True


def _message(approval: Approval) -> EmailMessage:
    member, course = approval.membership, approval.membership.course
    verb = {Status.APPROVED: "approved", Status.DENIED: "denied",
            Status.EXPIRED: "expired"}[approval.status]
    context = {"approval": approval, "member": member, "course": course, "verb": verb,
               "requests_url": settings.SITE_URL.rstrip("/")
               + reverse("approval-requests", args=[course.pk])}
    subject = (f"{course.code}: your approval for {approval.what} expired"
               if approval.status == Status.EXPIRED
               else f"{course.code}: your request for {approval.what} was {verb}")
    return EmailMessage(
        subject=subject,
        body=render_to_string("courses/email/approval_decided.txt", context),
        to=[member.email])


@dataclass
class MemberApprovals:
    """What a member's dashboard shows: outcomes not yet dismissed, templates granted."""

    unseen: list[Approval]
    granted: dict[str, Approval]


def approvals_dashboard(*, membership_ids: Iterable[int],
                        now: datetime | None = None) -> dict[int, MemberApprovals]:
    """For several members at once, in one query: decided requests they have not
    dismissed yet, and their template approvals that apply now."""
    now = now or timezone.now()
    ids = list(membership_ids)
    found = {pk: MemberApprovals(unseen=[], granted={}) for pk in ids}
    if not ids:
        return found
    live = (Q(status=Status.APPROVED, kind=Kind.TEMPLATE)
            & (Q(expires_at__isnull=True) | Q(expires_at__gt=now)))
    rows = (Approval.objects.filter(membership_id__in=ids)
            .filter(Q(status__in=DECIDED, seen_at__isnull=True) | live)
            .order_by("-decided_at", "-pk"))
    for approval in rows:
        mine = found[approval.membership_id]
        if approval.status in DECIDED and approval.seen_at is None:
            mine.unseen.append(approval)
        if (approval.status == Status.APPROVED and approval.kind == Kind.TEMPLATE
                and (approval.expires_at is None or approval.expires_at > now)):
            mine.granted.setdefault(approval.template_slug, approval)
    return found


def approvals_mark_seen(*, membership: Membership) -> int:
    return (Approval.objects.filter(membership=membership, status__in=DECIDED,
                                    seen_at__isnull=True).update(seen_at=timezone.now()))


# --- reading -----------------------------------------------------------------


def approvals_pending_count(course: Course) -> int:
    """For the course page's counter (one query)."""
    return Approval.objects.filter(course=course, status=Status.PENDING).count()


def approvals_for_staff(*, course: Course) -> tuple[list[Approval], list[Approval]]:
    """Pending requests (oldest first) and the latest decided ones: two queries."""
    base = Approval.objects.filter(course=course).select_related("membership", "decided_by")
    pending = list(base.filter(status=Status.PENDING).order_by("created_at", "pk"))
    decided = list(base.exclude(status=Status.PENDING)
                   .order_by("-decided_at", "-pk")[:RECENT_DECIDED])
    return pending, decided


def approvals_of_member(*, membership: Membership) -> list[Approval]:
    return list(Approval.objects.filter(membership=membership).select_related("decided_by")
                .order_by("-created_at", "-pk"))


def approval_get_for(*, user, course_id: int, approval_id: int,
                     action: Action) -> tuple[Approval, Membership]:
    """A request and the user's membership, if they may do `action` with it.

    Not in the course, or neither the requester nor staff who see requests →
    404; may see it but not do `action` → 403. Shared by pages and the API.
    """
    actor = membership_get_active(user=user, course_id=course_id)
    approval = (Approval.objects.select_related("membership__course", "decided_by")
                .filter(pk=approval_id, course_id=course_id).first()) if actor else None
    if approval is None or not (approval.membership_id == actor.pk or membership_may(
            actor=actor, action=Action.VIEW_APPROVALS)):
        raise Http404("No such request.")
    if action is Action.DECIDE_APPROVAL and not membership_may(
            actor=actor, action=action, owner=approval.membership):
        raise PermissionDenied("Your role in this course does not allow deciding requests.")
    if action is Action.REQUEST_APPROVAL and approval.membership_id != actor.pk:
        raise PermissionDenied("Only the member who asked can withdraw a request.")
    return approval, actor


def approvals_actor(*, user, course_id: int, action: Action) -> Membership:
    """The user's membership if their role allows `action` on the course: 404 / 403."""
    actor = membership_get_active(user=user, course_id=course_id)
    if actor is None:
        raise Http404("No such course.")
    if not membership_may(actor=actor, action=action):
        raise PermissionDenied("Your role in this course does not allow that.")
    return actor
