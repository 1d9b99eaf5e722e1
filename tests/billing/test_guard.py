import threading
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import LedgerEntry
from provisioning import services
from provisioning.models import Workspace
from tests.conftest import ec2


def launch(membership, name):
    return services.workspace_launch(membership=membership, template_slug="ml-cpu-student",
                                     name=name, actor=membership.user)


@pytest.fixture(autouse=True)
def no_disk_reserve(settings):
    """These tests check the compute money; disks set aside to term end: test_storage_reserve."""
    settings.LENS_STORAGE_RESERVE_DAYS = 0


def test_a_launch_holds_an_hour_at_the_machine_s_price(student, approved):
    workspace = launch(student, "w1")

    hold = LedgerEntry.objects.get(kind="hold", workspace_id=workspace.pk)
    assert hold.amount == Decimal("0.041600")
    assert workspace.compute_usd_per_hour == Decimal("0.0416")


def test_a_launch_without_the_money_is_refused_naming_the_remaining_budget_and_price(
        student, approved):
    student.budget_cap = Decimal("0.03")
    student.save()

    with pytest.raises(services.LaunchRefused) as refused:
        launch(student, "w1")

    assert refused.value.message == (
        "Not enough budget: you have $0.03 left of $0.03; ml-cpu-student (t3.medium) costs "
        "$0.0416/hour, and starting it sets aside $0.04 for the first 1 hour. "
        "Ask your instructor for more budget.")
    assert not Workspace.objects.exists() and not LedgerEntry.objects.exists()


def test_a_low_budget_launch_carries_a_runway_warning(student, approved):
    student.budget_cap = Decimal("5.50")
    student.save()

    workspace = launch(student, "w1")

    assert workspace.launch_warning == (
        "At $1.00/day your remaining $5.50 lasts about 5.5 days of running.")


def test_the_daily_cap_refuses_a_launch_that_would_pass_it(student, approved):
    student.course.max_daily_cost = Decimal("0.05")
    student.course.save()
    launch(student, "w1")

    with pytest.raises(services.LaunchRefused, match="Daily cap reached"):
        launch(student, "w2")


def test_the_course_total_refuses_when_the_class_has_spent_it(student, other_student, approved):
    student.course.budget_total = Decimal("0.05")
    student.course.save()
    launch(student, "w1")

    with pytest.raises(services.LaunchRefused, match="course budget is used up"):
        launch(other_student, "w2")


def test_the_api_answers_a_budget_refusal_with_403_and_the_reason(client, student, approved):
    student.budget_cap = Decimal("0.01")
    student.save()
    client.force_login(student.user)

    response = client.post("/api/workspaces/", {"course": student.course_id,
                                                "template": "ml-cpu-student", "name": "x"})

    assert response.status_code == 403
    assert response.json()["detail"].startswith("Not enough budget: you have $0.01 left")


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_launches_with_money_for_one_launch_one_machine(
        student, approved, fake_aws):
    student.budget_cap = Decimal("0.05")  # one hour of t3.medium is $0.0416
    student.save()
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def click(n):
        barrier.wait()
        try:
            launch(student, f"w{n}")
            outcomes.append("launched")
        except services.LaunchRefused as refusal:
            outcomes.append(refusal.message)
        except Exception as exc:  # anything else is a bug: show it
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert outcomes.count("launched") == 1
    refusals = [o for o in outcomes if o != "launched"]
    assert len(refusals) == 19
    expected = "Not enough budget: you have $0.01 left of $0.05"
    assert [r for r in refusals if not r.startswith(expected)] == []
    assert Workspace.objects.count() == 1
    running = ec2(fake_aws).describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
    assert sum(len(r["Instances"]) for r in running) == 1
