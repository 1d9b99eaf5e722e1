from decimal import Decimal

import pytest
from django.utils import timezone

from billing import ledger
from billing.alerts import course_alerts_check, member_alerts_check
from billing.models import BudgetAlert
from courses.models import Membership
from provisioning import tasks
from tests.factories import MembershipFactory


def spend(membership, amount, key):
    ledger.adjustment_grant(membership=membership, amount=Decimal(amount), actor=None,
                            note="usage stand-in", key=key)


@pytest.fixture(autouse=True)
def no_disk_reserve(settings):
    """These tests check the compute money; disks set aside to term end: test_storage_reserve."""
    settings.LENS_STORAGE_RESERVE_DAYS = 0


@pytest.fixture
def prof(course):
    return MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                             user__username="prof")


def test_each_threshold_is_sent_once_to_the_member_and_staff(
        student, prof, mailoutbox, django_capture_on_commit_callbacks):
    student.budget_cap = Decimal("10")
    student.save()
    spend(student, "5.50", "a")

    with django_capture_on_commit_callbacks(execute=True):
        first = member_alerts_check(membership=student)
        again = [member_alerts_check(membership=student) for _ in range(3)]

    assert first == [50] and again == [[], [], []]
    assert [m.to for m in mailoutbox] == [[student.email], [prof.email]]
    assert "50% of your Lens budget" in mailoutbox[0].body
    assert "$5.50 of $10.00" in mailoutbox[1].body

    spend(student, "5.00", "b")
    with django_capture_on_commit_callbacks(execute=True):
        assert member_alerts_check(membership=student) == [80, 100]
    assert BudgetAlert.objects.filter(membership=student).count() == 3
    assert len(mailoutbox) == 6


def test_a_member_over_the_cap_on_disks_alone_is_reported_not_deleted(student, prof):
    student.budget_cap = Decimal("1")
    student.save()
    spend(student, "1.00", "a")

    member_alerts_check(membership=student, storage_only=True)

    alert = BudgetAlert.objects.get(membership=student, threshold=100)
    assert "disks of stopped workspaces" in alert.message and "does not delete" in alert.message


def test_the_course_total_has_its_own_alerts(student, other_student, prof, course):
    course.budget_total = Decimal("10")
    course.save()
    spend(student, "4", "a")
    spend(other_student, "4.5", "b")

    assert course_alerts_check(course=course) == [50, 80]
    assert course_alerts_check(course=course) == []


@pytest.mark.django_db(transaction=True)
def test_repeated_sweeps_send_each_alert_once(student, approved, mailoutbox):
    import time_machine

    student.budget_cap = Decimal("0.10")
    student.save()
    with time_machine.travel(timezone.now(), tick=False) as clock:
        from provisioning.services import workspace_launch

        workspace_launch(membership=student, template_slug="ml-cpu-student", name="w",
                         actor=student.user)
        clock.shift(timezone.timedelta(minutes=80))  # about 55 % of $0.10 at t3.medium
        for _ in range(4):
            tasks.billing_sweep_task.delay()

    assert list(BudgetAlert.objects.filter(membership=student)
                .values_list("threshold", flat=True)) == [50]
    assert sum("50%" in m.subject for m in mailoutbox) == 1


def test_the_member_sees_their_latest_alert_on_the_dashboard(client, student):
    student.budget_cap = Decimal("10")
    student.save()
    spend(student, "8.20", "a")
    member_alerts_check(membership=student)
    client.force_login(student.user)

    html = client.get("/").content.decode()

    assert "You have reached 80% of your budget of $10.00." in html
