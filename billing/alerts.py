"""Budget alerts: 50, 80 and 100 % of a member's cap or a course's total,
each sent once, shown in the app and emailed to the member and course staff."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum

from billing import ledger
from billing.models import BudgetAlert, LedgerEntry
from courses.models import Course, Membership

log = logging.getLogger(__name__)
THRESHOLDS = (50, 80, 100)
STAFF_ROLES = [Membership.Role.INSTRUCTOR, Membership.Role.HEAD_TA, Membership.Role.TA]


def _staff_emails(course: Course) -> list[str]:
    return list(Membership.objects.active().filter(course=course, role__in=STAFF_ROLES)
                .exclude(email="").values_list("email", flat=True))


def _record(**fields) -> BudgetAlert | None:
    try:
        with transaction.atomic():
            return BudgetAlert.objects.create(**fields)
    except IntegrityError:
        return None  # another sweep sent it first


def _email(subject: str, body: str, recipients: list[str]) -> None:
    recipients = sorted(set(filter(None, recipients)))
    if not recipients:
        return
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:  # the in-app alert stands; mail trouble is logged, not fatal
        log.exception("could not send budget alert to %s", recipients)


def member_alerts_check(*, membership: Membership, storage_only: bool = False) -> list[int]:
    """Record and send the thresholds the member has newly crossed; returns them."""
    money = ledger.member_money(membership)
    if money.cap <= 0:
        return []
    crossed = [t for t in THRESHOLDS if money.spend * 100 >= money.cap * t]
    done = set(BudgetAlert.objects.filter(membership=membership)
               .values_list("threshold", flat=True))
    sent = []
    course = membership.course
    for threshold in crossed:
        if threshold in done:
            continue
        text = (f"{membership.display_name} has used {threshold}% of their budget in "
                f"{course.code}: ${money.spend:.2f} of ${money.cap:.2f}.")
        if threshold == 100:
            text += (" Their running machines were stopped." if not storage_only else
                     " No machine is running: the disks of stopped workspaces alone keep "
                     "costing money. Lens does not delete them; raise the cap or remove them.")
        alert = _record(course=course, membership=membership, threshold=threshold,
                        spend=money.spend, cap=money.cap, message=text)
        if alert is None:
            continue
        sent.append(threshold)
        you = (f"You have used {threshold}% of your Lens budget in {course.code}: "
               f"${money.spend:.2f} of ${money.cap:.2f}.")
        if threshold == 100:
            you += " Lens has stopped your running workspaces; ask your instructor for more."
        transaction.on_commit(lambda you=you, threshold=threshold: _email(
            f"[Lens] {course.code}: {threshold}% of your budget used", you, [membership.email]))
        transaction.on_commit(lambda text=text, threshold=threshold: _email(
            f"[Lens] {course.code}: {membership.display_name} at {threshold}% of budget", text,
            _staff_emails(course)))
    return sent


def course_alerts_check(*, course: Course) -> list[int]:
    """The same for the course's total budget, sent to course staff."""
    if not course.budget_total:
        return []
    spend = (LedgerEntry.objects.filter(Q(kind="usage") | Q(kind="adjustment"), course=course)
             .aggregate(total=Sum("amount"))["total"] or Decimal(0))
    done = set(BudgetAlert.objects.filter(course=course, membership__isnull=True)
               .values_list("threshold", flat=True))
    sent = []
    for threshold in THRESHOLDS:
        if threshold in done or spend * 100 < course.budget_total * threshold:
            continue
        text = (f"{course.code} has used {threshold}% of its budget: ${spend:.2f} of "
                f"${course.budget_total:.2f}.")
        if _record(course=course, membership=None, threshold=threshold, spend=spend,
                   cap=course.budget_total, message=text) is None:
            continue
        sent.append(threshold)
        transaction.on_commit(lambda text=text, threshold=threshold: _email(
            f"[Lens] {course.code}: {threshold}% of the course budget used", text,
            _staff_emails(course)))
    return sent
