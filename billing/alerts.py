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


def _until(money: ledger.MemberMoney, course: Course) -> str:
    if not money.reserved_until:
        return ""
    return f"{money.reserved_until.astimezone(course.zone):%b %-d}"


def _money_text(money: ledger.MemberMoney, course: Course) -> str:
    if not money.reserved:
        return f"${money.spend:.2f} of ${money.cap:.2f}"
    until = f" until {_until(money, course)}" if money.reserved_until else ""
    return (f"${money.spend:.2f} spent and ${money.reserved:.2f} set aside for disks{until}, "
            f"of ${money.cap:.2f}")


def member_alerts_check(*, membership: Membership, money: ledger.MemberMoney | None = None,
                        storage_only: bool = False, stopped: bool = False) -> list[int]:
    """Record and send the thresholds the member has newly crossed; returns them.

    A threshold is a share of the cap spent or set aside for disks (what can
    no longer be spent on machines). `stopped`: Lens just stopped their
    machines for the budget, which is 100 % even if a few cents are left.
    """
    money = money or ledger.member_money(membership)
    if money.cap <= 0:
        return []
    used = money.spend + money.reserved
    crossed = [t for t in THRESHOLDS if used * 100 >= money.cap * t or (stopped and t == 100)]
    done = set(BudgetAlert.objects.filter(membership=membership, kind=BudgetAlert.Kind.SPEND)
               .values_list("threshold", flat=True))
    sent = []
    course = membership.course
    for threshold in crossed:
        if threshold in done:
            continue
        text = (f"{membership.display_name} has used {threshold}% of their budget in "
                f"{course.code}: {_money_text(money, course)}.")
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
               f"{_money_text(money, course)}.")
        if threshold == 100:
            you += " Lens has stopped your running workspaces; ask your instructor for more."
        transaction.on_commit(lambda you=you, threshold=threshold: _email(
            f"[Lens] {course.code}: {threshold}% of your budget used", you, [membership.email]))
        transaction.on_commit(lambda text=text, threshold=threshold: _email(
            f"[Lens] {course.code}: {membership.display_name} at {threshold}% of budget", text,
            _staff_emails(course)))
    return sent


def member_storage_notice(*, membership: Membership, money: ledger.MemberMoney) -> bool:
    """Tell staff, once, that a member's disks alone will pass their cap by term end.

    It happens when a cap is lowered, or a term extended, below what the disks
    of stopped workspaces will cost. Lens does not delete anyone's files;
    staff decide (raise the cap, or remove a workspace).
    """
    short = money.spend + money.reserved - money.cap
    if money.cap <= 0 or short <= 0:
        return False
    course = membership.course
    until = f" by {_until(money, course)}" if money.reserved_until else ""
    text = (f"The disks of {membership.display_name}'s stopped workspaces in {course.code} "
            f"will pass their cap{until}: ${money.spend:.2f} spent, ${money.reserved:.2f} more "
            f"for disks, cap ${money.cap:.2f} (${short:.2f} over). No machine is running and "
            "Lens does not delete files: raise the cap or remove a workspace.")
    alert = _record(course=course, membership=membership, kind=BudgetAlert.Kind.STORAGE,
                    threshold=100, spend=money.spend, cap=money.cap, message=text)
    if alert is None:
        return False
    transaction.on_commit(lambda: _email(
        f"[Lens] {course.code}: {membership.display_name}'s disks will pass their cap", text,
        _staff_emails(course)))
    return True


def course_alerts_check(*, course: Course) -> list[int]:
    """The same for the course's total budget, sent to course staff."""
    if not course.budget_total:
        return []
    spend = (LedgerEntry.objects.filter(Q(kind="usage") | Q(kind="adjustment"), course=course)
             .aggregate(total=Sum("amount"))["total"] or Decimal(0))
    done = set(BudgetAlert.objects.filter(course=course, membership__isnull=True,
                                          kind=BudgetAlert.Kind.SPEND)
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
