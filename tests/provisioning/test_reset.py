"""Reset: back up the machine, replace it, reattach the home volume; audited, resumable."""

from datetime import timedelta

import pytest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from billing.models import LedgerEntry
from courses.models import Membership
from provisioning import aws, lifecycle, metering, services, tasks
from provisioning.models import WorkspaceBackup, WorkspaceReset
from provisioning.states import State
from tests.conftest import ec2
from tests.factories import PASSWORD, MembershipFactory
from tests.provisioning.conftest import instance, volume


def states(workspace):
    return [e.to_state for e in workspace.events.order_by("at", "pk")]


def tagged_instances(endpoint, workspace_id, live_only=False):
    filters = [{"Name": "tag:lens:workspace", "Values": [str(workspace_id)]}]
    response = ec2(endpoint).describe_instances(Filters=filters)
    found = [i for r in response["Reservations"] for i in r["Instances"]]
    return [i for i in found if not live_only or i["State"]["Name"] != "terminated"]


def test_a_reset_keeps_the_home_volume_and_attaches_it_to_the_fresh_machine(
        running, run_on_commit, fake_aws):
    old_instance, home = running.instance_id, running.home_volume_id

    run_on_commit(lifecycle.workspace_reset, workspace=running, actor=running.owner.user)

    running.refresh_from_db()
    assert running.state == State.RUNNING
    assert running.instance_id != old_instance
    assert running.home_volume_id == home
    assert running.reset_step == ""
    [attachment] = volume(fake_aws, home)["Attachments"]
    assert (attachment["InstanceId"], attachment["Device"]) == (running.instance_id, "/dev/sdf")
    assert instance(fake_aws, old_instance)["State"]["Name"] == "terminated"
    assert states(running)[-3:] == ["resetting", "pending", "running"]


def test_a_reset_backs_up_the_old_root_disk_and_keeps_the_backup_seven_days(
        running, run_on_commit, fake_aws):
    old = instance(fake_aws, running.instance_id)
    root = next(m["Ebs"]["VolumeId"] for m in old["BlockDeviceMappings"]
                if m["Ebs"]["VolumeId"] != running.home_volume_id)

    reset = run_on_commit(lifecycle.workspace_reset, workspace=running,
                          actor=running.owner.user)

    backup = WorkspaceBackup.objects.get(reset=reset)
    assert backup.kind == WorkspaceBackup.Kind.ROOT_BEFORE_RESET
    assert backup.volume_id == root
    assert timedelta(days=6, hours=23) < backup.delete_after - reset.started_at \
        <= timedelta(days=7)
    [snapshot] = ec2(fake_aws).describe_snapshots(SnapshotIds=[backup.snapshot_id])["Snapshots"]
    tags = {t["Key"]: t["Value"] for t in snapshot["Tags"]}
    assert tags["lens:reset"] == str(reset.pk)
    assert tags["lens:delete-after"] == backup.delete_after.date().isoformat()


def test_a_reset_is_audited_with_who_asked(running, run_on_commit, course):
    head_ta = MembershipFactory(course=course, role=Membership.Role.HEAD_TA,
                                user__username="hta")

    reset = run_on_commit(lifecycle.workspace_reset, workspace=running, actor=head_ta.user)

    reset.refresh_from_db()
    assert (reset.step, reset.actor) == (WorkspaceReset.Step.DONE, head_ta.user)
    assert reset.finished_at is not None
    event = running.events.get(to_state=State.RESETTING)
    assert event.actor == head_ta.user
    assert event.reason == f"reset by {head_ta.user.email}"


def test_running_the_reset_task_twice_does_the_work_once(running, run_on_commit, fake_aws):
    reset = run_on_commit(lifecycle.workspace_reset, workspace=running,
                          actor=running.owner.user)
    running.refresh_from_db()
    fresh = running.instance_id

    tasks.workspace_reset_task.delay(reset.pk)

    running.refresh_from_db()
    assert running.instance_id == fresh
    assert len(tagged_instances(fake_aws, running.pk)) == 2  # the old one, terminated, and one
    assert WorkspaceBackup.objects.filter(workspace=running).count() == 1
    assert len(ec2(fake_aws).describe_snapshots(OwnerIds=["self"], Filters=[
        {"Name": "tag:lens:reset", "Values": [str(reset.pk)]}])["Snapshots"]) == 1


def test_a_reset_whose_worker_died_after_run_instances_adopts_the_new_machine(
        running, django_capture_on_commit_callbacks, fake_aws, monkeypatch):
    real_transition = services.workspace_transition

    def die(**kwargs):
        if kwargs.get("to") == State.PENDING:
            raise SystemExit("worker killed")
        return real_transition(**kwargs)

    monkeypatch.setattr(services, "workspace_transition", die)
    with django_capture_on_commit_callbacks(execute=False):
        reset = lifecycle.workspace_reset(workspace=running, actor=running.owner.user)
    with pytest.raises(SystemExit):
        lifecycle.workspace_reset_advance(reset_id=reset.pk)
    monkeypatch.setattr(services, "workspace_transition", real_transition)
    running.refresh_from_db()
    assert (running.state, running.reset_step) == (State.RESETTING, "replace")

    tasks.workspace_reset_task.delay(reset.pk)

    running.refresh_from_db()
    [live] = tagged_instances(fake_aws, running.pk, live_only=True)
    assert running.state == State.RUNNING
    assert running.instance_id == live["InstanceId"]
    assert WorkspaceBackup.objects.filter(workspace=running).count() == 1


def test_a_stopped_workspace_comes_back_running_after_a_reset(running, run_on_commit, fake_aws):
    run_on_commit(services.workspace_stop, workspace=running, actor=running.owner.user)
    running.refresh_from_db()

    run_on_commit(lifecycle.workspace_reset, workspace=running, actor=running.owner.user)

    running.refresh_from_db()
    assert running.state == State.RUNNING
    assert volume(fake_aws, running.home_volume_id)["Attachments"][0]["InstanceId"] == \
        running.instance_id


def test_a_reset_is_refused_while_the_workspace_is_changing(running):
    services.workspace_transition(workspace=running, to=State.STOPPING)

    with pytest.raises(lifecycle.ResetRefused, match="stopping"):
        lifecycle.workspace_reset(workspace=running, actor=running.owner.user)


def test_reset_progress_shows_on_the_card(running):
    running.reset_step = WorkspaceReset.Step.ATTACH
    html = render_to_string("provisioning/_workspace_card.html", {"w": running, "card": None})

    assert "Reattaching your home" in html
    assert 'data-testid="reset"' not in html  # no second reset while one runs


def test_a_reset_bills_storage_as_one_span_and_compute_only_while_a_machine_runs(
        running, run_on_commit):
    run_on_commit(lifecycle.workspace_reset, workspace=running, actor=running.owner.user)
    running.refresh_from_db()

    events = list(running.events.order_by("at", "pk"))
    runs = metering.compute_runs(events)
    resetting = next(e.at for e in events if e.to_state == State.RESETTING)
    assert len(runs) == 2
    assert runs[0].end == resetting
    assert runs[1].start >= resetting
    span = metering.storage_span(events)
    assert span.end is None  # the home volume is still there, billed without a gap
    metering.workspace_meter(workspace=running, now=timezone.now())
    storage = list(LedgerEntry.objects.filter(workspace_id=running.pk, kind="usage",
                                              meter=LedgerEntry.Meter.STORAGE)
                   .order_by("interval_start"))
    assert storage[0].interval_start == span.start
    for before, after in zip(storage, storage[1:], strict=False):
        assert after.interval_start == before.interval_end  # no gap, no second charge


def test_expired_backups_are_deleted_and_fresh_ones_kept(running, run_on_commit, fake_aws):
    reset = run_on_commit(lifecycle.workspace_reset, workspace=running,
                          actor=running.owner.user)
    backup = WorkspaceBackup.objects.get(reset=reset)

    assert lifecycle.backups_expire(now=timezone.now()) == 0
    assert lifecycle.backups_expire(now=backup.delete_after + timedelta(minutes=1)) == 1

    backup.refresh_from_db()
    assert backup.deleted_at is not None
    assert ec2(fake_aws).describe_snapshots(OwnerIds=["self"], Filters=[
        {"Name": "snapshot-id", "Values": [backup.snapshot_id]}])["Snapshots"] == []
    assert lifecycle.backups_expire(now=backup.delete_after + timedelta(days=1)) == 0


def test_a_reset_that_aws_refuses_fails_the_workspace_with_the_reason(
        running, run_on_commit, monkeypatch):
    def refuse(*args, **kwargs):
        raise aws.AwsError("UnauthorizedOperation: not allowed to create snapshots")

    monkeypatch.setattr(aws, "snapshot_create", refuse)
    reset = run_on_commit(lifecycle.workspace_reset, workspace=running,
                          actor=running.owner.user)

    running.refresh_from_db()
    reset.refresh_from_db()
    assert reset.step == WorkspaceReset.Step.FAILED
    assert running.state == State.FAILED
    assert "not allowed to create snapshots" in running.failure_reason
    assert running.reset_step == ""


# --- who may reset ------------------------------------------------------------


def login(client, membership):
    assert client.login(username=membership.user.username, password=PASSWORD)


@pytest.mark.parametrize(("role", "page", "api"), [
    (Membership.Role.HEAD_TA, 200, 202),
    (Membership.Role.INSTRUCTOR, 200, 202),
    (Membership.Role.TA, 403, 403),
])
def test_who_of_the_staff_may_reset_a_students_workspace(
        client, running, course, role, page, api, django_capture_on_commit_callbacks):
    staff = MembershipFactory(course=course, role=role, user__username=f"staff-{role}")
    login(client, staff)

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("workspace-reset", args=[running.pk]),
                               HTTP_HX_REQUEST="true")
    assert response.status_code == page
    if page == 200:
        running.refresh_from_db()
        running.state, running.reset_step = State.RUNNING, ""  # as if that reset finished
        running.resets.all().delete()
        running.save()
    with django_capture_on_commit_callbacks(execute=False):
        assert client.post(f"/api/workspaces/{running.pk}/reset/").status_code == api


def test_the_owner_may_reset_by_page_and_api(client, running, django_capture_on_commit_callbacks):
    login(client, running.owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("workspace-reset", args=[running.pk]),
                               HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert "the files in /home stay" in response.content.decode()
    running.refresh_from_db()
    assert running.state == State.RUNNING
    with django_capture_on_commit_callbacks(execute=True):
        api = client.post(f"/api/workspaces/{running.pk}/reset/")
    assert api.status_code == 202
    assert api.json()["state"] == "resetting"


def test_another_student_an_outsider_and_another_courses_staff_get_404(
        client, running, other_student):
    outsider_course = MembershipFactory(role=Membership.Role.INSTRUCTOR,
                                        user__username="elsewhere")
    for member in (other_student, outsider_course):
        login(client, member)
        assert client.post(reverse("workspace-reset", args=[running.pk]),
                           HTTP_HX_REQUEST="true").status_code == 404
        assert client.post(f"/api/workspaces/{running.pk}/reset/").status_code == 404
    running.refresh_from_db()
    assert running.state == State.RUNNING
    assert not running.resets.exists()
