from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.utils import InternalError, ProgrammingError

from billing import ledger
from billing.models import LedgerEntry


@pytest.fixture
def line(student):
    return ledger.adjustment_grant(membership=student, amount=Decimal("1.50"),
                                   actor=None, note="lab fee", key="t1")


@pytest.mark.parametrize("sql", [
    "UPDATE billing_ledgerentry SET amount = 0 WHERE id = %s",
    "DELETE FROM billing_ledgerentry WHERE id = %s",
])
def test_postgres_refuses_to_change_or_remove_a_ledger_line(line, sql):
    with (pytest.raises((InternalError, ProgrammingError), match="append-only"),
          transaction.atomic(), connection.cursor() as cursor):
        cursor.execute(sql, [line.pk])

    assert LedgerEntry.objects.get(pk=line.pk).amount == Decimal("1.500000")


def test_the_orm_cannot_edit_a_line_either(line):
    line.amount = Decimal("0")
    with pytest.raises((InternalError, ProgrammingError)), transaction.atomic():
        line.save()


def test_the_same_idempotency_key_writes_one_line(student):
    first = ledger.adjustment_grant(membership=student, amount=Decimal("2"), actor=None,
                                    note="x", key="same")
    second = ledger.adjustment_grant(membership=student, amount=Decimal("2"), actor=None,
                                     note="x", key="same")

    assert first is not None and second is None
    assert ledger.member_spend(membership_id=student.pk) == Decimal("2")


def test_spend_is_usage_plus_adjustments_and_committed_adds_unused_holds(student):
    from django.utils import timezone

    now = timezone.now()
    ledger.hold_place(membership=student, workspace_id=7, amount=Decimal("0.0416"),
                      usd_per_hour=Decimal("0.0416"), at=now)
    ledger.usage_cover(membership_id=student.pk, course_id=student.course_id, workspace_id=7,
                       meter="compute", run_start=now,
                       covered_until=now + timezone.timedelta(minutes=30),
                       usd_per_hour=Decimal("0.0416"))
    ledger.adjustment_grant(membership=student, amount=Decimal("-1"), actor=None,
                            note="credit", key="c")

    assert ledger.member_spend(membership_id=student.pk) == Decimal("0.0208") - 1
    # Half the hold is used by the metered half hour; the other half is still reserved.
    assert ledger.member_committed(membership_id=student.pk) == Decimal("0.0208") * 2 - 1
    assert ledger.holds_release(workspace_id=7) == 1
    assert ledger.holds_release(workspace_id=7) == 0
    assert ledger.member_committed(membership_id=student.pk) == Decimal("0.0208") - 1


def test_a_cap_change_is_a_ledger_line_with_actor_and_reason(student, course):
    from tests.factories import UserFactory

    prof = UserFactory(username="prof")

    assert ledger.cap_set(membership=student, cap=Decimal("30"), actor=prof,
                          note="extra for final project", key="k1")

    student.refresh_from_db()
    line = LedgerEntry.objects.get(kind="cap")
    assert student.budget_cap == Decimal("30")
    assert (line.actor, line.note, line.amount) == (prof, "extra for final project",
                                                    Decimal("30"))
    assert ledger.member_spend(membership_id=student.pk) == 0
