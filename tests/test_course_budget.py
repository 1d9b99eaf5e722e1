from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import ledger
from billing.models import LedgerEntry
from courses.models import Membership
from tests.factories import MembershipFactory


@pytest.fixture
def prof(course):
    return MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                             user__username="prof")


@pytest.fixture
def ta(course):
    return MembershipFactory(course=course, role=Membership.Role.TA, user__username="ta")


def page(course):
    return f"/courses/{course.pk}/budget/"


def member_page(member):
    return f"/courses/{member.course_id}/members/{member.pk}/budget/"


def test_staff_see_everyone_s_spend_students_do_not(client, course, student, prof, ta):
    ledger.adjustment_grant(membership=student, amount=Decimal("12.5"), actor=None, note="x",
                            key="a")
    client.force_login(prof.user)
    html = client.get(page(course)).content.decode()
    assert student.email in html and "$12.50" in html

    client.force_login(ta.user)
    assert client.get(page(course)).status_code == 200
    client.force_login(student.user)
    assert client.get(page(course)).status_code == 403
    client.force_login(MembershipFactory(user__username="elsewhere").user)
    assert client.get(page(course)).status_code == 404


def test_a_student_sees_their_own_spending_but_not_a_classmate_s(client, student, other_student):
    client.force_login(student.user)

    assert client.get(member_page(student)).status_code == 200
    assert client.get(member_page(other_student)).status_code == 404


def test_an_instructor_changes_a_cap_with_a_reason_once_even_if_submitted_twice(
        client, student, prof):
    client.force_login(prof.user)
    form = {"form": "cap", "cap": "30.00", "reason": "final project", "key": "k-1"}

    assert client.post(member_page(student), form).status_code == 302
    client.post(member_page(student), form)

    student.refresh_from_db()
    line = LedgerEntry.objects.get(kind="cap")
    assert student.budget_cap == Decimal("30.00")
    assert (line.actor, line.note) == (prof.user, "final project")


def test_bad_input_gets_field_errors_and_changes_nothing(client, student, prof):
    client.force_login(prof.user)

    response = client.post(member_page(student), {"form": "adjustment", "amount": "0",
                                                  "reason": "", "key": "k"})

    assert response.status_code == 400
    html = response.content.decode()
    assert "An adjustment of $0 changes nothing." in html and "This field is required." in html
    assert not LedgerEntry.objects.exists()


def test_a_credit_lowers_spend(client, student, prof):
    ledger.adjustment_grant(membership=student, amount=Decimal("10"), actor=None, note="x",
                            key="a")
    client.force_login(prof.user)

    client.post(member_page(student), {"form": "adjustment", "amount": "-4",
                                       "reason": "refund for outage", "key": "k2"})

    assert ledger.member_spend(membership_id=student.pk) == Decimal("6")


def test_a_ta_may_look_but_not_change_a_budget(client, student, ta):
    client.force_login(ta.user)

    assert client.get(member_page(student)).status_code == 200
    response = client.post(member_page(student), {"form": "cap", "cap": "99", "reason": "x",
                                                  "key": "k"})
    assert response.status_code == 403


@pytest.mark.parametrize("students", [5, 40])
def test_the_course_budget_page_query_count_does_not_grow_with_the_class(
        client, course, prof, students):
    for n in range(students):
        m = MembershipFactory(course=course, user__username=f"s{n}", section="AB"[n % 2])
        ledger.adjustment_grant(membership=m, amount=Decimal(n), actor=None, note="x",
                                key=f"k{n}")
    client.force_login(prof.user)

    with CaptureQueriesContext(connection) as ctx:
        assert client.get(page(course)).status_code == 200

    # session, user, actor, members, spend per member, workspaces, alerts
    assert len(ctx.captured_queries) == 7
