"""Stop, start, hibernate and delete, each through the state machine, with the home volume."""

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError
from django.urls import reverse
from django.utils import timezone

from courses.models import Membership
from provisioning import aws, lifecycle, metering, services
from provisioning.models import WorkspaceBackup
from provisioning.states import State
from tests.conftest import ec2
from tests.factories import PASSWORD, MembershipFactory
from tests.provisioning.conftest import instance, volume


def states(workspace):
    return [e.to_state for e in workspace.events.order_by("at", "pk")]


def test_a_launch_makes_a_tagged_home_volume_in_the_machines_zone_and_attaches_it(
        running, fake_aws):
    home = volume(fake_aws, running.home_volume_id)
    machine = instance(fake_aws, running.instance_id)

    assert home["Size"] == running.home_volume_gib == 10
    assert home["VolumeType"] == "gp3"
    assert home["AvailabilityZone"] == machine["Placement"]["AvailabilityZone"]
    assert home["Attachments"][0]["InstanceId"] == running.instance_id
    assert home["Attachments"][0]["Device"] == "/dev/sdf"
    tags = {t["Key"]: t["Value"] for t in home["Tags"]}
    assert tags["lens:workspace"] == str(running.pk)
    assert tags["lens:role"] == "home"
    assert tags["lens:member"] == str(running.owner_id)


def test_running_the_launch_again_does_not_make_a_second_home_volume(running, fake_aws):
    from provisioning import tasks

    tasks.workspace_launch_task.delay(running.pk)
    services.workspace_sync(workspace=running)

    found = ec2(fake_aws).describe_volumes(Filters=[
        {"Name": "tag:lens:workspace", "Values": [str(running.pk)]},
        {"Name": "tag:lens:role", "Values": ["home"]}])["Volumes"]
    assert [v["VolumeId"] for v in found] == [running.home_volume_id]


def test_a_home_volume_made_by_a_task_that_died_is_adopted_not_made_again(
        student, approved, launch, fake_aws, monkeypatch):
    real_attach = aws.volume_attach

    def die(*args, **kwargs):
        raise SystemExit("worker killed after CreateVolume")

    monkeypatch.setattr(aws, "volume_attach", die)
    with pytest.raises(SystemExit):
        launch(student)
    monkeypatch.setattr(aws, "volume_attach", real_attach)
    workspace = student.workspaces.get()
    workspace.home_volume_id = ""  # as if the id never reached the database
    workspace.save(update_fields=["home_volume_id"])

    services.workspace_sync(workspace=services._fresh(workspace.pk))

    workspace.refresh_from_db()
    assert workspace.state == State.RUNNING
    found = ec2(fake_aws).describe_volumes(Filters=[
        {"Name": "tag:lens:workspace", "Values": [str(workspace.pk)]}])["Volumes"]
    homes = [v for v in found if v["Size"] == 10]
    assert [v["VolumeId"] for v in homes] == [workspace.home_volume_id]


def test_stop_and_start_keep_the_same_home_volume_attached(running, run_on_commit, fake_aws):
    home = running.home_volume_id

    run_on_commit(services.workspace_stop, workspace=running, actor=running.owner.user)
    running.refresh_from_db()
    assert running.state == State.STOPPED
    run_on_commit(services.workspace_start, workspace=running, actor=running.owner.user)

    running.refresh_from_db()
    assert running.state == State.RUNNING
    assert running.home_volume_id == home
    assert volume(fake_aws, home)["Attachments"][0]["InstanceId"] == running.instance_id
    assert states(running) == ["requested", "pending", "running", "stopping", "stopped",
                               "pending", "running"]


@pytest.fixture
def hibernating_template(approved):
    approved.template.hibernation = True
    approved.template.save(update_fields=["hibernation"])
    return approved.template


def test_a_template_that_allows_hibernation_launches_machines_configured_for_it(
        hibernating_template, running, fake_aws):
    machine = instance(fake_aws, running.instance_id)

    assert machine["HibernationOptions"] == {"Configured": True}


def test_hibernate_asks_aws_to_hibernate_and_ends_stopped(
        hibernating_template, running, run_on_commit, monkeypatch):
    calls = []
    real_stop = aws.instances_stop

    def spy(account, ids, *, hibernate=False):
        calls.append(hibernate)
        return real_stop(account, ids, hibernate=hibernate)

    monkeypatch.setattr(aws, "instances_stop", spy)
    run_on_commit(lifecycle.workspace_hibernate, workspace=running, actor=running.owner.user)

    running.refresh_from_db()
    assert calls == [True]
    assert running.state == State.STOPPED
    assert states(running)[-2:] == ["hibernating", "stopped"]


def test_when_aws_refuses_to_hibernate_the_workspace_stops_and_the_history_says_why(
        hibernating_template, running, run_on_commit, monkeypatch):
    real_stop = aws.instances_stop

    def refuse(account, ids, *, hibernate=False):
        if hibernate:
            raise aws.HibernationRefused("UnsupportedHibernationConfiguration: not configured")
        return real_stop(account, ids)

    monkeypatch.setattr(aws, "instances_stop", refuse)
    run_on_commit(lifecycle.workspace_hibernate, workspace=running, actor=running.owner.user)

    running.refresh_from_db()
    assert running.state == State.STOPPED
    assert states(running)[-3:] == ["hibernating", "stopping", "stopped"]
    fallback = running.events.get(to_state=State.STOPPING)
    assert "refused to hibernate" in fallback.reason
    assert "UnsupportedHibernationConfiguration" in fallback.reason


def test_the_adapter_turns_aws_hibernation_refusals_into_hibernation_refused(
        running, monkeypatch):
    client = aws._client(running.cloud_account, "ec2")
    error = ClientError({"Error": {"Code": "UnsupportedHibernationConfiguration",
                                   "Message": "not enabled"}}, "StopInstances")
    monkeypatch.setattr(client, "stop_instances", lambda **kw: (_ for _ in ()).throw(error))

    with pytest.raises(aws.HibernationRefused):
        aws.instances_stop(running.cloud_account, [running.instance_id], hibernate=True)
    with pytest.raises(aws.AwsError) as plain:
        aws.instances_stop(running.cloud_account, [running.instance_id])
    assert not isinstance(plain.value, aws.HibernationRefused)


def test_hibernate_is_refused_when_the_template_does_not_allow_it(running):
    with pytest.raises(services.TransitionNotAllowed, match="does not allow hibernation"):
        lifecycle.workspace_hibernate(workspace=running, actor=running.owner.user)

    running.refresh_from_db()
    assert running.state == State.RUNNING


def test_delete_terminates_the_machine_backs_up_the_home_and_deletes_the_volume(
        running, run_on_commit, fake_aws):
    home = running.home_volume_id

    run_on_commit(lifecycle.workspace_terminate, workspace=running, actor=running.owner.user)

    running.refresh_from_db()
    assert running.state == State.TERMINATED
    assert states(running)[-2:] == ["terminating", "terminated"]
    assert running.events.get(to_state=State.TERMINATING).actor == running.owner.user
    assert instance(fake_aws, running.instance_id)["State"]["Name"] == "terminated"
    assert ec2(fake_aws).describe_volumes(Filters=[
        {"Name": "volume-id", "Values": [home]}])["Volumes"] == []
    backup = WorkspaceBackup.objects.get(workspace=running)
    assert backup.kind == WorkspaceBackup.Kind.HOME_AT_DELETE
    assert backup.volume_id == home
    assert timedelta(days=6) < backup.delete_after - timezone.now() <= timedelta(days=7)
    [snapshot] = ec2(fake_aws).describe_snapshots(SnapshotIds=[backup.snapshot_id])["Snapshots"]
    assert {"Key": "lens:role", "Value": "backup"} in snapshot["Tags"]
    assert not metering.has_volumes(running)  # nothing left to bill


def test_running_the_delete_task_twice_backs_up_once(running, run_on_commit, fake_aws):
    from provisioning import tasks

    run_on_commit(lifecycle.workspace_terminate, workspace=running, actor=running.owner.user)
    tasks.workspace_terminate_task.delay(running.pk)

    assert WorkspaceBackup.objects.filter(workspace=running).count() == 1
    assert len(ec2(fake_aws).describe_snapshots(OwnerIds=["self"], Filters=[
        {"Name": "tag:lens:workspace", "Values": [str(running.pk)]}])["Snapshots"]) == 1


def test_a_stopped_workspace_keeps_its_home_volume_billed(running, run_on_commit):
    run_on_commit(services.workspace_stop, workspace=running, actor=running.owner.user)
    running.refresh_from_db()

    assert metering.has_volumes(running)
    assert metering.storage_usd_per_hour_of([running]) == running.storage_usd_per_hour > 0


def test_the_first_boot_script_mounts_the_home_volume_before_the_templates_bootstrap(
        running, fake_aws):
    import base64

    attribute = ec2(fake_aws).describe_instance_attribute(InstanceId=running.instance_id,
                                                          Attribute="userData")
    import email

    user_data = email.message_from_string(
        base64.b64decode(attribute["UserData"]["Value"]).decode())
    # cloud-init runs the parts in order: the home volume first, then Lens's agent.
    parts = [p for p in user_data.walk() if not p.is_multipart()]
    assert [p.get_filename() for p in parts] == ["bootstrap", "lens-agent.sh"]
    script = parts[0].get_payload(decode=True).decode()

    assert script.startswith("#!/bin/bash")
    assert "blkid" in script and "mkfs.ext4" in script  # formats only a blank volume
    assert "LABEL=lens-home /home" in script


def test_the_templates_bootstrap_runs_after_home_is_mounted(running):
    running.template.bootstrap = "#!/bin/bash\necho hello > /tmp/hello\n"

    script = lifecycle.user_data_for(workspace=running)

    assert script.index("mount /home") < script.index("echo hello > /tmp/hello")
    running.home_volume_gib = 0
    assert lifecycle.user_data_for(workspace=running) == running.template.bootstrap


# --- who may hibernate and delete -------------------------------------------------------

def login(client, membership):
    assert client.login(username=membership.user.username, password=PASSWORD)


@pytest.mark.parametrize("role", [Membership.Role.TA, Membership.Role.HEAD_TA])
def test_tas_and_head_tas_may_not_delete_a_students_workspace(client, running, course, role):
    login(client, MembershipFactory(course=course, role=role, user__username=f"s-{role}"))

    page = client.post(reverse("workspace-delete", args=[running.pk]), HTTP_HX_REQUEST="true")
    api = client.delete(f"/api/workspaces/{running.pk}/")

    assert (page.status_code, api.status_code) == (403, 403)
    running.refresh_from_db()
    assert running.state == State.RUNNING


def test_another_student_and_another_courses_instructor_get_404_for_delete_and_hibernate(
        client, running, other_student):
    elsewhere = MembershipFactory(role=Membership.Role.INSTRUCTOR, user__username="else")
    for member in (other_student, elsewhere):
        login(client, member)
        for name in ("workspace-delete", "workspace-hibernate"):
            assert client.post(reverse(name, args=[running.pk]),
                               HTTP_HX_REQUEST="true").status_code == 404
        assert client.delete(f"/api/workspaces/{running.pk}/").status_code == 404
        assert client.post(f"/api/workspaces/{running.pk}/hibernate/").status_code == 404


def test_the_owner_deletes_by_api_and_the_instructor_by_page(
        client, student, approved, launch, course, django_capture_on_commit_callbacks):
    first, second = launch(student, name="one"), launch(student, name="two")
    login(client, student)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/workspaces/{first.pk}/").status_code == 202
    login(client, MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                                    user__username="prof"))
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(reverse("workspace-delete", args=[second.pk]), HTTP_HX_REQUEST="true")

    assert page.status_code == 200
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == (State.TERMINATED, State.TERMINATED)


def test_hibernate_of_a_template_without_it_answers_409_with_the_reason(client, running):
    login(client, running.owner)

    response = client.post(f"/api/workspaces/{running.pk}/hibernate/")

    assert response.status_code == 409
    assert "does not allow hibernation" in response.json()["detail"]
