"""Spot: both prices shown, spot launches, and an interruption that keeps the home volume."""

import dataclasses
from datetime import date
from decimal import Decimal

import pytest
from django.core import mail
from django.template.loader import render_to_string

from billing.models import InstancePrice
from provisioning import aws, lifecycle, services
from provisioning.states import State
from tests.factories import PASSWORD
from tests.provisioning.conftest import instance, volume

SPOT = Decimal("0.012500")


@pytest.fixture
def spot_template(approved):
    approved.template.spot_allowed = True
    approved.template.save(update_fields=["spot_allowed"])
    on_demand = InstancePrice.objects.get(region="us-east-1", instance_type="t3.medium")
    InstancePrice.objects.create(region="us-east-1", instance_type="t3.medium", market="spot",
                                 usd_per_hour=SPOT, vcpu=on_demand.vcpu,
                                 memory_gib=on_demand.memory_gib, source="test",
                                 fetched_on=date(2026, 11, 1))
    return approved.template


@pytest.fixture
def on_spot(student, spot_template, launch):
    workspace = launch(student, market="spot")
    assert workspace.state == State.RUNNING
    return workspace


def test_the_launch_form_shows_the_spot_price_beside_on_demand_and_offers_spot(
        client, student, spot_template):
    assert client.login(username=student.user.username, password=PASSWORD)

    html = client.get("/").content.decode()

    assert "$0.0416" in html  # t3.medium on-demand
    assert "spot $0.0125" in html
    assert 'name="market" value="spot"' in html
    assert "may interrupt" in html


def test_the_launch_form_offers_no_spot_when_no_template_allows_it(client, student, approved):
    assert client.login(username=student.user.username, password=PASSWORD)

    html = client.get("/").content.decode()

    assert 'name="market"' not in html


def test_a_spot_launch_runs_a_spot_machine_priced_at_the_spot_rate(on_spot, fake_aws):
    assert on_spot.market == "spot"
    assert on_spot.compute_usd_per_hour == SPOT
    assert instance(fake_aws, on_spot.instance_id)["InstanceLifecycle"] == "spot"


def test_spot_on_a_template_that_does_not_allow_it_is_refused_on_the_field(student, approved):
    with pytest.raises(services.LaunchRefused) as refusal:
        services.workspace_launch(membership=student, template_slug="ml-cpu-student",
                                  name="hw1", actor=student.user, market="spot")

    assert refusal.value.field == "market"
    assert not student.workspaces.exists()


def test_the_api_refuses_spot_on_a_template_that_does_not_allow_it(client, student, approved):
    assert client.login(username=student.user.username, password=PASSWORD)

    response = client.post("/api/workspaces/", {"course": student.course_id,
                                                "template": "ml-cpu-student", "name": "hw1",
                                                "market": "spot"})

    assert response.status_code == 400
    assert "market" in response.json()


def test_an_interruption_stops_the_workspace_for_spot_tells_the_student_and_keeps_home(
        on_spot, fake_aws, django_capture_on_commit_callbacks):
    home = on_spot.home_volume_id

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.workspace_interrupted(workspace_id=on_spot.pk,
                                        reason="Server.SpotInstanceShutdown")

    on_spot.refresh_from_db()
    assert on_spot.state == State.STOPPED
    assert on_spot.stop_reason == "spot"
    assert on_spot.home_volume_id == home
    assert volume(fake_aws, home)["State"] in {"in-use", "available"}
    assert "spot interruption" in on_spot.events.get(to_state=State.STOPPED).reason
    [email] = mail.outbox
    assert email.to == [on_spot.owner.email]
    assert "/home are safe" in email.body
    html = render_to_string("provisioning/_workspace_card.html", {"w": on_spot, "card": None})
    assert "AWS reclaimed the spot capacity" in html
    assert "Your files in /home are safe" in html


def test_a_terminated_spot_machine_is_replaced_on_start_with_the_home_reattached(
        on_spot, fake_aws, run_on_commit):
    home, old = on_spot.home_volume_id, on_spot.instance_id
    aws.instances_terminate(on_spot.cloud_account, [old])  # AWS reclaimed it for good

    lifecycle.workspace_interrupted(workspace_id=on_spot.pk, reason="Spot termination",
                                    instance_state="terminated")
    on_spot.refresh_from_db()
    assert (on_spot.state, on_spot.instance_id) == (State.STOPPED, "")

    run_on_commit(services.workspace_start, workspace=on_spot, actor=on_spot.owner.user)

    on_spot.refresh_from_db()
    assert on_spot.state == State.RUNNING
    assert on_spot.instance_id not in {"", old}
    assert on_spot.home_volume_id == home
    assert volume(fake_aws, home)["Attachments"][0]["InstanceId"] == on_spot.instance_id


def test_the_settle_poll_folds_a_spot_interruption_instead_of_failing(
        on_spot, monkeypatch):
    services.workspace_transition(workspace=on_spot, to=State.STOPPING)  # caught mid-change
    real = aws.instance_get(on_spot.cloud_account, on_spot.instance_id)
    reclaimed = dataclasses.replace(real, state="terminated",
                                    state_reason="Server.SpotInstanceTermination: Spot "
                                                 "instance termination")
    monkeypatch.setattr(aws, "instance_get", lambda account, instance_id: reclaimed)

    services.workspace_sync(workspace=on_spot)

    on_spot.refresh_from_db()
    assert on_spot.state == State.STOPPED
    assert on_spot.stop_reason == "spot"
    assert on_spot.failure_reason == ""


def test_an_interruption_of_a_workspace_the_student_already_stopped_changes_nothing(
        on_spot, run_on_commit):
    run_on_commit(services.workspace_stop, workspace=on_spot, actor=on_spot.owner.user)

    lifecycle.workspace_interrupted(workspace_id=on_spot.pk, reason="late notice")

    on_spot.refresh_from_db()
    assert (on_spot.state, on_spot.stop_reason) == (State.STOPPED, "user")


def test_a_home_volume_without_a_machine_stays_billed(on_spot):
    from django.utils import timezone

    from provisioning import metering

    lifecycle.workspace_interrupted(workspace_id=on_spot.pk, reason="Spot termination",
                                    instance_state="terminated")
    on_spot.refresh_from_db()

    assert metering.has_volumes(on_spot)
    assert on_spot.pk in {w.pk for w in metering.workspaces_to_meter(now=timezone.now())}
