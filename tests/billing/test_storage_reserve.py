"""Disks cost money while stopped: their cost to the end of term is set aside,
so no stop comes too late for storage, and the guard reads a ledger metered to
the second."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from billing import ledger
from billing.models import BudgetAlert, LedgerEntry
from billing.templatetags.money import usd
from provisioning import metering, tasks
from provisioning.models import BudgetWatch, Workspace
from provisioning.services import LaunchRefused, workspace_launch, workspace_stop
from provisioning.states import State

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clock():
    with time_machine.travel(timezone.now().replace(microsecond=0), tick=False) as traveller:
        yield traveller


@pytest.fixture
def term(course, clock):
    """The term ends ten days from now."""
    course.ends_at = timezone.now() + timedelta(days=10)
    course.save()
    return course


def launch(student, name="w"):
    workspace = workspace_launch(membership=student, template_slug="ml-cpu-student", name=name,
                                 actor=student.user)
    workspace.refresh_from_db()
    return workspace


def disks_to_term_end(workspace, course):
    seconds = (course.ends_at - timezone.now()).total_seconds()
    return ledger.cost_of(usd_per_hour=workspace.storage_usd_per_hour, seconds=seconds)


def test_the_guard_refuses_when_the_disks_to_term_end_leave_too_little(student, approved, term):
    # 30 GiB of gp3 for ten days is about $0.79; the first hour of a t3.medium $0.0416.
    student.budget_cap = Decimal("0.80")
    student.save()

    with pytest.raises(LaunchRefused) as refused:
        launch(student)

    assert "set aside for your workspaces' disks until the end of term" in refused.value.message
    assert not Workspace.objects.filter(owner=student).exists()


def test_the_budget_bar_shows_what_is_set_aside_and_until_when(client, student, approved, term):
    workspace = launch(student)
    client.force_login(student.user)

    html = client.get("/").content.decode()

    reserved = disks_to_term_end(workspace, term)
    assert f'<span data-testid="reserved">{usd(reserved)}</span>' in html
    local_day = term.ends_at.astimezone(term.zone)
    assert f"set aside for your disks until {local_day:%b} {local_day.day}" in html


def test_the_stop_leaves_the_disks_paid_for_to_term_end(student, approved, term, clock):
    student.budget_cap = Decimal("1.50")
    student.save()
    workspace = launch(student)
    started = timezone.now()
    # Machines may burn the cap minus the disks to term end, at the compute rate only.
    room = student.budget_cap - disks_to_term_end(workspace, term)
    expected = started + timedelta(hours=float(room / workspace.compute_usd_per_hour))
    watch = BudgetWatch.objects.get(membership=student)
    assert abs(watch.check_at - (expected - timedelta(seconds=5))) < timedelta(seconds=2)

    clock.move_to(watch.check_at)
    tasks.member_budget_check_task.delay(student.pk, str(watch.token))

    workspace.refresh_from_db()
    assert (workspace.state, workspace.stop_reason) == (State.STOPPED, "budget")
    alert = BudgetAlert.objects.get(membership=student, threshold=100)
    assert "set aside for disks" in alert.message
    # The disks go on costing money until the term ends, and the spend stays within the cap.
    clock.move_to(term.ends_at)
    metering.workspaces_meter(now=term.ends_at, queryset=Workspace.objects.filter(pk=workspace.pk)
                              .select_related("owner"))
    spend = ledger.member_spend(membership_id=student.pk)
    assert student.budget_cap - Decimal("0.01") < spend <= student.budget_cap


def test_staff_are_told_once_when_disks_alone_will_pass_a_lowered_cap(
        student, approved, term, clock, mailoutbox, django_capture_on_commit_callbacks):
    from tests.factories import MembershipFactory

    prof = MembershipFactory(course=term, user__username="prof", role="instructor")
    workspace = launch(student)
    workspace_stop(workspace=workspace, actor=student.user)
    student.budget_cap = Decimal("0.20")  # below what the disks will cost by term end
    student.save()

    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            tasks.billing_sweep_task.delay()

    notices = BudgetAlert.objects.filter(membership=student, kind=BudgetAlert.Kind.STORAGE)
    assert notices.count() == 1
    assert "Lens does not delete files" in notices.get().message
    assert [m for m in mailoutbox if prof.email in m.to and "disks will pass" in m.subject]
    workspace.refresh_from_db()
    assert workspace.state == State.STOPPED  # nothing deleted, nothing terminated


def test_the_guard_meters_the_member_before_it_decides(student, approved, term, clock,
                                                        settings):
    settings.LENS_STORAGE_RESERVE_DAYS = 0
    term.ends_at = None
    term.max_concurrent_workspaces = 0
    term.save()
    student.budget_cap = Decimal("0.10")
    student.save()
    launch(student, "first")
    # Two hours later no sweep has run: the ledger holds only the first minute.
    clock.move_to(timezone.now() + timedelta(hours=2))
    assert ledger.member_spend(membership_id=student.pk) < Decimal("0.01")

    with pytest.raises(LaunchRefused, match="Not enough budget"):
        launch(student, "second")
    # (Unmetered, the ledger said $0.0007 spent + $0.0416 held: room for another hold.)


def test_a_run_billed_in_many_lines_adds_up_to_its_exact_price(student, approved, clock):
    workspace = launch(student)
    started = timezone.now()
    for _ in range(7 * 60):  # the sweep every minute for seven hours
        clock.shift(timedelta(seconds=61))
        metering.workspaces_meter(now=timezone.now(),
                                  queryset=Workspace.objects.filter(pk=workspace.pk)
                                  .select_related("owner"))

    billed = ledger._sum(LedgerEntry.objects.filter(workspace_id=workspace.pk, meter="compute",
                                                    kind="usage"))
    seconds = (timezone.now() - started).total_seconds()
    assert billed == ledger.cost_of(usd_per_hour=workspace.compute_usd_per_hour, seconds=seconds)


def test_the_sweep_bills_a_stopped_workspace_disks_by_the_hour(student, approved, clock):
    workspace = launch(student)
    workspace_stop(workspace=workspace, actor=student.user)
    stopped_lines = LedgerEntry.objects.filter(workspace_id=workspace.pk, meter="storage").count()

    for _ in range(59):
        clock.shift(timedelta(minutes=1))
        tasks.billing_sweep_task.delay()
    assert LedgerEntry.objects.filter(workspace_id=workspace.pk,
                                      meter="storage").count() == stopped_lines
    clock.shift(timedelta(minutes=1))
    tasks.billing_sweep_task.delay()
    assert LedgerEntry.objects.filter(workspace_id=workspace.pk,
                                      meter="storage").count() == stopped_lines + 1
