"""Idle auto-stop: CloudWatch data in moto, agent heartbeats, warnings and notices."""

import base64
import email
import re
import subprocess
from datetime import timedelta

import boto3
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from lens.celery import app as celery_app
from provisioning import agent, aws, idle, services
from provisioning.models import Workspace
from provisioning.services import cloud_account_default
from provisioning.states import State
from tests.conftest import ec2
from tests.factories import PASSWORD


@pytest.fixture(autouse=True)
def idle_settings(settings):
    settings.LENS_IDLE_METRIC_PERIOD_SECONDS = 60  # detailed monitoring: one datapoint a minute
    settings.LENS_IDLE_CPU_PERCENT = 5
    settings.LENS_IDLE_BUSY_CPU_PERCENT = 50
    settings.LENS_IDLE_WARNING_MINUTES = 15
    settings.LENS_IDLE_FINISHED_MINUTES = 10
    settings.LENS_PUBLIC_URL = "https://lens.uni.example.edu"


@pytest.fixture
def hourly(approved):
    """The approved template stops after an hour idle."""
    approved.template.idle_stop_minutes = 60
    approved.template.save()
    return approved.template


@pytest.fixture
def launch(student, hourly, django_capture_on_commit_callbacks):
    """A running workspace (a real moto instance) that has been up `minutes` already."""

    def make(name: str, *, minutes: int = 180) -> Workspace:
        with django_capture_on_commit_callbacks(execute=True):
            workspace = services.workspace_launch(membership=student,
                                                  template_slug=hourly.slug, name=name,
                                                  actor=student.user)
        since = timezone.now() - timedelta(minutes=minutes)
        Workspace.objects.filter(pk=workspace.pk).update(state_changed_at=since)
        workspace.refresh_from_db()
        assert workspace.state == State.RUNNING
        return workspace

    return make


def put_series(endpoint, instance_id, metric, values, *, now, unit="Percent"):
    """One datapoint a minute, the last one a minute before `now`: values oldest first."""
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=endpoint)
    data = [{"MetricName": metric, "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
             "Timestamp": now - timedelta(minutes=len(values) - n), "Value": value, "Unit": unit}
            for n, value in enumerate(values)]
    for first in range(0, len(data), 500):
        cloudwatch.put_metric_data(Namespace="AWS/EC2", MetricData=data[first:first + 500])


def sweep(capture, *, now):
    with capture(execute=True):
        return idle.idle_sweep(now=now)


# --- policy --------------------------------------------------------------------


def test_the_policy_is_the_templates_then_the_courses_then_none():
    assert idle.idle_policy_resolve(template_minutes=60, course_minutes=240) == \
        idle.IdlePolicy(60, "template")
    assert idle.idle_policy_resolve(template_minutes=None, course_minutes=240) == \
        idle.IdlePolicy(240, "course")
    assert idle.idle_policy_resolve(template_minutes=None, course_minutes=None) is None


def test_the_workspace_card_says_after_how_long_idle_it_stops(
        client, student, hourly, launch):
    launch("hw1")
    client.login(username=student.user.username, password=PASSWORD)

    html = client.get(reverse("home")).content.decode()

    assert "Stops after 1 h idle" in html


def test_a_workspace_without_any_policy_is_never_swept(student, approved, launch,
                                                       django_capture_on_commit_callbacks):
    approved.template.idle_stop_minutes = None
    approved.template.save()
    workspace = launch("forever", minutes=600)

    summary = sweep(django_capture_on_commit_callbacks, now=timezone.now())

    workspace.refresh_from_db()
    assert summary.checked == 0
    assert workspace.state == State.RUNNING and workspace.idle_policy_text == ""


def test_the_course_policy_applies_when_the_template_has_none(approved, launch, student):
    approved.template.idle_stop_minutes = None
    approved.template.save()
    student.course.idle_stop_minutes = 90
    student.course.save()

    assert launch("lab").idle_policy_text == "Stops after 1 h 30 min idle"


# --- detection with CloudWatch data in moto ---------------------------------------


def test_an_idle_workspace_is_warned_then_stopped_for_idle_and_a_busy_one_keeps_running(
        fake_aws, launch, mailoutbox, django_capture_on_commit_callbacks):
    quiet, busy = launch("quiet"), launch("busy")
    now = timezone.now()
    put_series(fake_aws, quiet.instance_id, "CPUUtilization", [1.5] * 120, now=now)
    put_series(fake_aws, busy.instance_id, "CPUUtilization", [1.5] * 100 + [35.0] * 20, now=now)

    first = sweep(django_capture_on_commit_callbacks, now=now)

    quiet.refresh_from_db()
    assert first.warned == [quiet.pk] and first.stopped == []
    assert quiet.state == State.RUNNING and quiet.idle_warning_active
    [warning] = mailoutbox
    assert warning.to == [quiet.owner.email]
    stop_at = f"{quiet.idle_stop_at.astimezone(quiet.owner.course.zone):%H:%M}"
    assert stop_at in warning.subject and "unless there is activity" in warning.body

    later = now + timedelta(minutes=16)
    second = sweep(django_capture_on_commit_callbacks, now=later)

    quiet.refresh_from_db()
    busy.refresh_from_db()
    assert second.stopped == [quiet.pk]
    assert quiet.state in {State.STOPPING, State.STOPPED}
    assert quiet.stop_reason == Workspace.StopReason.IDLE
    instance = ec2(fake_aws).describe_instances(InstanceIds=[quiet.instance_id])
    assert instance["Reservations"][0]["Instances"][0]["State"]["Name"] in {"stopping",
                                                                           "stopped"}
    assert busy.state == State.RUNNING and busy.idle_warned_at is None
    warning, stopped = mailoutbox  # the warning, then word of the stop; nothing for busy
    assert stopped.to == [quiet.owner.email]
    assert quiet.name in stopped.subject and "stopped after" in stopped.subject
    assert "Start it again from your dashboard" in stopped.body


def test_network_traffic_counts_as_activity(fake_aws, launch,
                                            django_capture_on_commit_callbacks):
    downloading = launch("downloading")
    now = timezone.now()
    put_series(fake_aws, downloading.instance_id, "CPUUtilization", [1.0] * 120, now=now)
    put_series(fake_aws, downloading.instance_id, "NetworkIn", [5_000_000.0] * 120, now=now,
               unit="Bytes")

    summary = sweep(django_capture_on_commit_callbacks, now=now + timedelta(minutes=30))

    assert summary.warned == [] and summary.stopped == []


def test_the_warning_is_sent_once_and_the_stop_never_comes_in_the_same_sweep(
        fake_aws, launch, mailoutbox, django_capture_on_commit_callbacks):
    # Nobody swept while it went idle: the first sweep is already past the window.
    workspace = launch("late")
    now = timezone.now()
    put_series(fake_aws, workspace.instance_id, "CPUUtilization", [0.5] * 150, now=now)

    first = sweep(django_capture_on_commit_callbacks, now=now)
    again = sweep(django_capture_on_commit_callbacks, now=now + timedelta(minutes=5))

    workspace.refresh_from_db()
    assert first.warned == [workspace.pk] and first.stopped == []
    assert again.warned == [] and again.stopped == []
    assert workspace.state == State.RUNNING
    assert workspace.idle_stop_at == now + timedelta(minutes=15)  # a full warning lead
    assert len(mailoutbox) == 1


def test_a_workspace_started_less_than_the_window_ago_is_not_idle(
        fake_aws, launch, django_capture_on_commit_callbacks):
    launch("fresh", minutes=30)  # no datapoints at all: no evidence of activity either

    summary = sweep(django_capture_on_commit_callbacks, now=timezone.now())

    assert summary.warned == [] and summary.stopped == []


def test_missing_datapoints_for_the_whole_window_count_as_idle(
        fake_aws, launch, django_capture_on_commit_callbacks):
    silent = launch("silent", minutes=120)
    now = timezone.now()

    warned = sweep(django_capture_on_commit_callbacks, now=now)
    stopped = sweep(django_capture_on_commit_callbacks, now=now + timedelta(minutes=15))

    assert warned.warned == [silent.pk] and stopped.stopped == [silent.pk]


def test_a_cloudwatch_failure_stops_nothing(launch, monkeypatch,
                                            django_capture_on_commit_callbacks):
    launch("unknown", minutes=600)

    def down(*args, **kwargs):
        raise aws.AwsUnavailable("Could not reach AWS")

    monkeypatch.setattr(aws, "metrics_fetch", down)
    summary = sweep(django_capture_on_commit_callbacks, now=timezone.now())

    assert summary.failed_accounts and summary.warned == [] and summary.stopped == []


def test_a_busy_machine_that_went_quiet_gets_one_job_finished_notice(
        fake_aws, launch, mailoutbox, django_capture_on_commit_callbacks, client, student):
    training = launch("training")
    now = timezone.now()
    put_series(fake_aws, training.instance_id, "CPUUtilization", [92.0] * 100 + [0.8] * 20,
               now=now)

    first = sweep(django_capture_on_commit_callbacks, now=now)
    second = sweep(django_capture_on_commit_callbacks, now=now + timedelta(minutes=1))

    assert first.finished == [training.pk] and second.finished == []
    assert first.warned == []  # 20 minutes quiet: the stop is still 40 minutes away
    [notice] = mailoutbox
    assert "looks finished" in notice.subject
    client.login(username=student.user.username, password=PASSWORD)
    assert "Your job looks finished" in client.get(reverse("home")).content.decode()


def test_a_machine_that_was_never_busy_gets_no_job_finished_notice(
        fake_aws, launch, django_capture_on_commit_callbacks):
    reading = launch("reading")
    now = timezone.now()
    put_series(fake_aws, reading.instance_id, "CPUUtilization", [3.0] * 120, now=now)

    summary = sweep(django_capture_on_commit_callbacks, now=now)

    assert summary.finished == []


# --- heartbeats --------------------------------------------------------------------


def beat(client, workspace, token, **report):
    return client.post(f"/api/workspaces/{workspace.pk}/heartbeat/", report,
                       content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_heartbeat_reporting_ssh_use_keeps_an_otherwise_idle_machine_running(
        fake_aws, launch, django_capture_on_commit_callbacks):
    workspace = launch("ssh")
    token = agent.agent_token_issue(workspace=workspace)
    now = timezone.now()
    put_series(fake_aws, workspace.instance_id, "CPUUtilization", [1.0] * 120, now=now)

    response = beat(agent_client(), workspace, token, ssh_sessions=1, ssh_connections=1)
    summary = sweep(django_capture_on_commit_callbacks, now=now + timedelta(minutes=2))

    workspace.refresh_from_db()
    assert response.status_code == 200 and response.json() == {"recorded": True, "active": True}
    assert workspace.last_activity_at is not None
    assert workspace.last_heartbeat["ssh_sessions"] == 1
    assert summary.warned == [] and summary.stopped == []


def test_activity_after_a_warning_lifts_it(fake_aws, launch,
                                          django_capture_on_commit_callbacks):
    workspace = launch("back")
    token = agent.agent_token_issue(workspace=workspace)
    now = timezone.now()
    put_series(fake_aws, workspace.instance_id, "CPUUtilization", [1.0] * 120, now=now)
    assert sweep(django_capture_on_commit_callbacks, now=now).warned == [workspace.pk]

    with django_capture_on_commit_callbacks(execute=True):
        beat(agent_client(), workspace, token, jupyter_kernels_busy=1)
    summary = sweep(django_capture_on_commit_callbacks, now=now + timedelta(minutes=20))

    workspace.refresh_from_db()
    assert not workspace.idle_warning_active
    assert summary.stopped == [] and workspace.state == State.RUNNING


def test_a_heartbeat_without_activity_records_the_report_but_not_activity(launch):
    workspace = launch("quiet-agent")
    token = agent.agent_token_issue(workspace=workspace)

    response = beat(agent_client(), workspace, token, ssh_connections=1)

    workspace.refresh_from_db()
    assert response.json() == {"recorded": True, "active": False}
    assert workspace.last_heartbeat_at is not None and workspace.last_activity_at is None


def test_heartbeats_closer_than_thirty_seconds_are_ignored(launch):
    workspace = launch("chatty")
    token = agent.agent_token_issue(workspace=workspace)
    client = agent_client()

    beat(client, workspace, token)
    second = beat(client, workspace, token, ssh_sessions=2)

    workspace.refresh_from_db()
    assert second.status_code == 200 and second.json()["recorded"] is False
    assert workspace.last_activity_at is None


def test_a_heartbeat_with_a_wrong_token_is_refused(launch):
    workspace = launch("mine")
    agent.agent_token_issue(workspace=workspace)

    response = beat(agent_client(), workspace, "not-the-token", ssh_sessions=1)

    workspace.refresh_from_db()
    assert response.status_code == 403
    assert workspace.last_activity_at is None


def test_another_workspaces_token_is_refused_and_unknown_workspaces_look_the_same(launch):
    mine, other = launch("mine"), launch("other")
    agent.agent_token_issue(workspace=mine)
    other_token = agent.agent_token_issue(workspace=other)
    client = agent_client()

    assert beat(client, mine, other_token).status_code == 403
    assert client.post("/api/workspaces/999999/heartbeat/", {}, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {other_token}").status_code == 403


def test_a_heartbeat_without_a_token_is_refused_even_from_a_signed_in_owner(
        launch, student):
    workspace = launch("session")
    agent.agent_token_issue(workspace=workspace)
    client = agent_client()
    client.login(username=student.user.username, password=PASSWORD)

    response = client.post(f"/api/workspaces/{workspace.pk}/heartbeat/", {"ssh_sessions": 1},
                           content_type="application/json")

    assert response.status_code in {401, 403}


def test_a_heartbeat_for_a_stopped_workspace_is_refused(launch,
                                                       django_capture_on_commit_callbacks):
    workspace = launch("stopped")
    token = agent.agent_token_issue(workspace=workspace)
    with django_capture_on_commit_callbacks(execute=True):
        services.workspace_stop(workspace=workspace, actor=None)

    assert beat(agent_client(), workspace, token, ssh_sessions=1).status_code == 409


def test_a_heartbeat_with_a_bad_field_says_which(launch):
    workspace = launch("bad")
    token = agent.agent_token_issue(workspace=workspace)

    response = beat(agent_client(), workspace, token, ssh_sessions=-1)

    assert response.status_code == 400 and "ssh_sessions" in response.json()


def agent_client():
    """A client that enforces CSRF, as a browser would: the agent endpoint must not need it."""
    from django.test import Client

    return Client(enforce_csrf_checks=True)


# --- the agent in the user data ----------------------------------------------------


def test_the_agent_installer_carries_the_token_and_url_and_is_valid_shell(tmp_path, db):
    script = agent.agent_install_script(workspace_id=42, token="tok-EN_123")

    assert "TOKEN=tok-EN_123" in script
    assert "LENS_URL=https://lens.uni.example.edu/api/workspaces/42/heartbeat/" in script
    path = tmp_path / "install.sh"
    path.write_text(script)
    assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0
    program = re.search(r"<<'LENS_AGENT_PY'\n(.*?)\nLENS_AGENT_PY\n", script, re.S).group(1)
    compile(program, "lens-agent", "exec")  # the agent itself is valid Python


def test_a_cloud_config_bootstrap_and_the_agent_travel_as_two_cloud_init_parts(db):
    user_data = agent.user_data_build(bootstrap="#cloud-config\npackages: [git]\n",
                                      workspace_id=7, token="abc")

    parts = [p for p in email.message_from_string(user_data).walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in parts] == ["text/cloud-config", "text/x-shellscript"]
    assert "packages: [git]" in parts[0].get_payload(decode=True).decode()
    assert "TOKEN=abc" in parts[1].get_payload(decode=True).decode()


def test_a_launch_puts_the_agent_in_the_user_data_and_keeps_only_the_tokens_hash(
        fake_aws, launch):
    workspace = launch("agent")

    attribute = ec2(fake_aws).describe_instance_attribute(InstanceId=workspace.instance_id,
                                                          Attribute="userData")
    user_data = base64.b64decode(attribute["UserData"]["Value"]).decode()
    token = re.search(r"^TOKEN=(\S+)$", user_data, re.M).group(1)
    workspace.refresh_from_db()
    assert f"/api/workspaces/{workspace.pk}/heartbeat/" in user_data
    assert workspace.agent_token_hash and token not in workspace.agent_token_hash
    assert beat(agent_client(), workspace, token, ssh_sessions=1).status_code == 200


# --- scale ---------------------------------------------------------------------------


def test_metrics_for_300_instances_take_two_get_metric_data_calls(fake_aws, db, monkeypatch):
    account = cloud_account_default()
    client = aws._client(account, "cloudwatch")
    sizes = []
    real = client.get_metric_data

    def counting(**params):
        sizes.append(len(params["MetricDataQueries"]))
        return real(**params)

    monkeypatch.setattr(client, "get_metric_data", counting)
    ids = [f"i-{n:017x}" for n in range(300)]
    now = timezone.now()
    put_series(fake_aws, ids[299], "CPUUtilization", [42.0], now=now)

    metrics = aws.metrics_fetch(account, instance_ids=ids, start=now - timedelta(minutes=10),
                                end=now, period=60)

    assert len(sizes) == 2 == metrics.calls and max(sizes) <= 500
    assert metrics.instances[ids[299]].cpu_max == 42.0
    assert metrics.instances[ids[0]].cpu == {}


def test_a_sweep_of_300_workspaces_makes_two_calls_and_a_constant_number_of_queries(
        fake_aws, student, hourly, monkeypatch):
    account = cloud_account_default()
    now = timezone.now()
    Workspace.objects.bulk_create(
        Workspace(owner=student, template=hourly, cloud_account=account, name=f"ws-{n}",
                  instance_type=hourly.instance_type, state=State.RUNNING,
                  instance_id=f"i-{n:017x}", last_activity_at=now - timedelta(minutes=20))
        for n in range(300))
    Workspace.objects.update(state_changed_at=now - timedelta(hours=3))

    with CaptureQueriesContext(connection) as queries:
        summary = idle.idle_sweep(now=now)

    assert summary.checked == summary.measured == 300
    assert summary.aws_calls == 2
    assert len(queries.captured_queries) == 1  # the candidates; nothing to warn or stop


def test_the_beat_schedule_runs_the_idle_sweep_every_minute():
    entry = celery_app.conf.beat_schedule["idle-sweep"]

    assert entry["task"] == "provisioning.tasks.idle_sweep_task" and entry["schedule"] == 60.0


def test_the_demo_quick_lab_warns_on_its_card_then_stops_for_idle_within_minutes(
        db, client, django_capture_on_commit_callbacks):
    from django.core.management import call_command

    from courses.models import Membership

    call_command("demo_seed")
    emily = Membership.objects.get(email="emily.chen@demo.lens.edu")
    with django_capture_on_commit_callbacks(execute=True):
        workspace = services.workspace_launch(membership=emily, template_slug="quick-lab",
                                              name="lab", actor=emily.user)
    workspace.refresh_from_db()
    started = workspace.state_changed_at
    client.login(username="emily.chen", password="lens-demo")
    assert "Stops after 3 min idle" in client.get(reverse("home")).content.decode()

    warned = sweep(django_capture_on_commit_callbacks, now=started + timedelta(minutes=2))
    html = client.get(reverse("home")).content.decode()
    stopped = sweep(django_capture_on_commit_callbacks, now=started + timedelta(minutes=3))

    workspace.refresh_from_db()
    assert warned.warned == [workspace.pk] and "Lens will stop this workspace at" in html
    assert stopped.stopped == [workspace.pk]
    assert workspace.stop_reason == Workspace.StopReason.IDLE
    html = client.get(reverse("home")).content.decode()
    assert "Stopped: idle for too long." in html
