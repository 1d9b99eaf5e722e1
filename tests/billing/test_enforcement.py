"""Hard enforcement: the stop is scheduled for the moment the money runs out."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from billing import ledger
from provisioning import tasks
from provisioning.enforcement import member_budget_enforce
from provisioning.models import BudgetWatch, Workspace
from provisioning.services import workspace_launch
from provisioning.states import State

pytestmark = pytest.mark.django_db(transaction=True)
RATE = Decimal("0.0416")


@pytest.fixture(autouse=True)
def no_disk_reserve(settings):
    """These tests check the compute money; disks set aside to term end: test_storage_reserve."""
    settings.LENS_STORAGE_RESERVE_DAYS = 0


@pytest.fixture
def clock():
    with time_machine.travel(timezone.now().replace(microsecond=0), tick=False) as traveller:
        yield traveller


@pytest.fixture
def running(student, approved, clock):
    """A running t3.medium for a student with $0.10 (about 2 h 20 min of it)."""
    student.budget_cap = Decimal("0.10")
    student.save()
    workspace = workspace_launch(membership=student, template_slug="ml-cpu-student",
                                 name="w", actor=student.user)
    workspace.refresh_from_db()
    assert workspace.state == State.RUNNING
    return workspace


def exhaustion(workspace, student):
    """When spend reaches the cap at compute + storage rate, from the run's start."""
    rate = workspace.compute_usd_per_hour + workspace.storage_usd_per_hour
    return workspace.events.get(to_state=State.RUNNING).at + timedelta(
        hours=float(student.budget_cap / rate))


def test_going_running_schedules_a_check_just_before_the_money_runs_out(running, student):
    watch = BudgetWatch.objects.get(membership=student)

    expected = exhaustion(running, student) - timedelta(seconds=5)
    assert abs(watch.check_at - expected) < timedelta(seconds=2)


def test_the_scheduled_check_stops_the_workspace_at_the_cap(running, student, clock):
    watch = BudgetWatch.objects.get(membership=student)
    clock.move_to(watch.check_at)

    tasks.member_budget_check_task.delay(student.pk, str(watch.token))

    running.refresh_from_db()
    assert running.state == State.STOPPED
    assert running.stop_reason == "budget"
    spend = ledger.member_spend(membership_id=student.pk)
    assert student.budget_cap - Decimal("0.001") < spend <= student.budget_cap


def test_a_check_that_comes_too_early_or_is_outdated_does_nothing(running, student, clock):
    watch = BudgetWatch.objects.get(membership=student)

    tasks.member_budget_check_task.delay(student.pk, str(watch.token))  # now: far too early
    clock.move_to(watch.check_at)
    tasks.member_budget_check_task.delay(student.pk, "00000000-0000-0000-0000-000000000000")

    running.refresh_from_db()
    assert running.state == State.RUNNING


def test_the_sweep_catches_a_missed_schedule(running, student, clock):
    BudgetWatch.objects.filter(membership=student).update(check_at=None)  # the check got lost
    clock.move_to(exhaustion(running, student) + timedelta(seconds=20))

    tasks.billing_sweep_task.delay()

    running.refresh_from_db()
    assert (running.state, running.stop_reason) == (State.STOPPED, "budget")


def test_the_daily_cap_stops_with_its_own_reason(running, student, clock):
    student.course.max_daily_cost = Decimal("0.05")
    student.course.save()
    verdict = member_budget_enforce(membership_id=student.pk, now=timezone.now())
    clock.move_to(verdict.check_at)

    member_budget_enforce(membership_id=student.pk, now=timezone.now())

    assert Workspace.objects.get(pk=running.pk).stop_reason == "daily_cap"
