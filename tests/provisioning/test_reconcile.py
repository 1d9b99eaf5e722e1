"""The reconciler: AWS's view of every Lens machine folded back into Lens."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from courses.models import Membership
from provisioning import aws, reconcile, services, tasks
from provisioning.models import OrphanInstance, Workspace
from provisioning.states import State
from tests.conftest import ec2, instances_tagged
from tests.factories import MembershipFactory, UserFactory

LATER = timedelta(minutes=5)  # past the reconciler's grace for work in flight


def launch(member, name="hw1", *, run_task=True, capture=None) -> Workspace:
    with capture(execute=False):
        workspace = services.workspace_launch(membership=member, template_slug="ml-cpu-student",
                                              name=name, actor=member.user)
    if run_task:
        tasks.workspace_launch_task.delay(workspace.pk)
    workspace.refresh_from_db()
    return workspace


@pytest.fixture
def running(student, approved, django_capture_on_commit_callbacks):
    workspace = launch(student, capture=django_capture_on_commit_callbacks)
    assert workspace.state == State.RUNNING
    return workspace


def reconcile_now(workspace_or_account, *, at=None, **kwargs) -> reconcile.ReconcileSummary:
    account = getattr(workspace_or_account, "cloud_account", workspace_or_account)
    return reconcile.reconcile_account(account=account, now=at or timezone.now() + LATER,
                                       **kwargs)


def aws_state(endpoint, instance_id) -> str:
    response = ec2(endpoint).describe_instances(InstanceIds=[instance_id])
    return response["Reservations"][0]["Instances"][0]["State"]["Name"]


def writes(queries) -> list[str]:
    return [q["sql"] for q in queries
            if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


# --- console stop, console terminate, started outside Lens ------------------------------


def test_a_machine_stopped_in_the_console_is_stopped_in_lens_and_billed_until_aws_stopped_it(
        student, approved, fake_aws, django_capture_on_commit_callbacks, client):
    start = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as clock:
        workspace = launch(student, capture=django_capture_on_commit_callbacks)
        clock.shift(timedelta(hours=2))
        ec2(fake_aws).stop_instances(InstanceIds=[workspace.instance_id])  # in the console
        clock.shift(timedelta(minutes=1))  # the next reconcile, a minute later

        summary = reconcile.reconcile_account(account=workspace.cloud_account,
                                              now=timezone.now())

    workspace.refresh_from_db()
    assert summary.changed == 1
    assert workspace.state == State.STOPPED
    assert workspace.stop_reason == Workspace.StopReason.OUTSIDE
    assert workspace.public_ip is None
    stopping, stopped = workspace.events.order_by("at", "pk")[3:]
    assert (stopping.to_state, stopped.to_state) == ("stopping", "stopped")
    assert stopping.at == start + timedelta(hours=2)  # when AWS stopped it, not when Lens noticed
    assert "Stopped outside Lens" in stopping.reason
    assert workspace.last_session_seconds == 2 * 3600
    assert workspace.last_session_cost == Decimal("0.083200")  # 2 h × $0.0416, not 2 h 1 min
    client.force_login(student.user)
    assert "Stopped: outside Lens (in the AWS console or by AWS)." in \
        client.get("/").content.decode()


def test_a_machine_terminated_in_the_console_is_terminated_in_lens_with_the_reason(
        running, fake_aws):
    ec2(fake_aws).terminate_instances(InstanceIds=[running.instance_id])

    summary = reconcile_now(running)

    running.refresh_from_db()
    assert summary.changed == 1
    assert running.state == State.TERMINATED
    assert "terminated outside Lens" in running.failure_reason
    assert [e.to_state for e in running.events.all()][-2:] == ["terminating", "terminated"]


def test_a_machine_aws_no_longer_lists_at_all_is_terminated_in_lens(running):
    Workspace.objects.filter(pk=running.pk).update(instance_id="i-00000000000000000")

    reconcile_now(running)

    running.refresh_from_db()
    assert running.state == State.TERMINATED
    assert "AWS no longer lists instance i-00000000000000000" in running.failure_reason


def test_a_machine_whose_tags_were_removed_is_not_taken_for_gone(running, fake_aws):
    ec2(fake_aws).delete_tags(Resources=[running.instance_id],
                              Tags=[{"Key": "lens:workspace"}])

    summary = reconcile_now(running)

    running.refresh_from_db()
    assert running.state == State.RUNNING
    assert summary.changed == 0


def test_a_stopped_workspace_started_in_the_console_is_running_in_lens_and_billed(
        running, fake_aws, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.workspace_stop(workspace=running, actor=running.owner.user)
    running.refresh_from_db()
    assert running.state == State.STOPPED
    ec2(fake_aws).start_instances(InstanceIds=[running.instance_id])

    reconcile_now(running)

    running.refresh_from_db()
    assert running.state == State.RUNNING
    assert running.stop_reason == ""
    assert "Started outside Lens" in running.events.order_by("-at", "-pk").first().reason


def test_a_stop_whose_task_died_is_sent_again_and_then_folded_in(running, fake_aws):
    services.workspace_transition(workspace=running, to=State.STOPPING, reason="stop requested",
                                  stop_reason="user")  # the stop task never ran

    summary = reconcile_now(running)
    assert summary.stopped == 1
    assert aws_state(fake_aws, running.instance_id) == "stopped"

    reconcile_now(running)
    running.refresh_from_db()
    assert running.state == State.STOPPED
    assert running.stop_reason == "user"


def test_a_stop_that_finishes_while_aws_is_being_listed_is_not_undone(
        running, monkeypatch, django_capture_on_commit_callbacks):
    real_listing = aws.instances_describe_tagged

    def listing_then_member_stops(account, page_size):
        listing = real_listing(account, page_size=page_size)  # says: running
        with django_capture_on_commit_callbacks(execute=True):
            services.workspace_stop(workspace=running, actor=running.owner.user)
        return listing

    monkeypatch.setattr(aws, "instances_describe_tagged", listing_then_member_stops)
    reconcile_now(running)

    running.refresh_from_db()
    assert running.state == State.STOPPED
    assert running.stop_reason == "user"


def test_changes_reach_the_member_and_course_pages_after_commit(
        running, fake_aws, django_capture_on_commit_callbacks, monkeypatch):
    told = []
    monkeypatch.setattr(services, "broadcast_member_workspaces",
                        lambda membership_id: told.append(membership_id))
    ec2(fake_aws).stop_instances(InstanceIds=[running.instance_id])

    with django_capture_on_commit_callbacks(execute=True):
        reconcile_now(running)

    assert told and set(told) == {running.owner_id}


# --- spot interruptions --------------------------------------------------------------------


def spot_instance(instance_id: str, workspace_id: int, state: str) -> aws.TaggedInstance:
    return aws.TaggedInstance(
        id=instance_id, state=state, instance_type="t3.medium", public_ip=None,
        private_ip="10.0.0.5", public_dns="", launch_time=None,
        state_reason="Server.SpotInstanceTermination: Spot instance termination",
        tags={aws.TAG_WORKSPACE: str(workspace_id)},
        state_reason_code="Server.SpotInstanceTermination",
        state_transition_reason="Service initiated (2026-03-02 15:30:00 GMT)", lifecycle="spot")


def test_a_spot_interruption_that_stops_the_machine_stops_the_workspace_with_reason_spot(
        running):
    fold = reconcile.fold_decide(workspace=running,
                                 instance=spot_instance(running.instance_id, running.pk,
                                                        "stopped"),
                                 now=timezone.now())

    assert fold.steps == (State.STOPPING, State.STOPPED)
    assert fold.fields["stop_reason"] == Workspace.StopReason.SPOT
    assert fold.at == datetime(2026, 3, 2, 15, 30, tzinfo=UTC)


def test_a_spot_interruption_reaches_the_student_as_the_reason_on_their_workspace(
        running, monkeypatch, client, mailoutbox, django_capture_on_commit_callbacks):
    interrupted = spot_instance(running.instance_id, running.pk, "terminated")
    monkeypatch.setattr(aws, "instances_describe_tagged",
                        lambda account, page_size: aws.InstanceListing([interrupted], 1))

    with django_capture_on_commit_callbacks(execute=True):
        reconcile_now(running)

    running.refresh_from_db()
    # The workspace outlives its machine: stopped, its home volume kept, a fresh
    # machine at the next Start.
    assert running.state == State.STOPPED
    assert running.stop_reason == Workspace.StopReason.SPOT
    assert running.instance_id == ""
    assert [m.subject for m in mailoutbox] == [
        f"[{running.owner.course.code}] AWS reclaimed your spot workspace {running.name}"]
    client.force_login(running.owner.user)
    assert "AWS reclaimed the spot capacity" in client.get("/").content.decode()


# --- orphans --------------------------------------------------------------------------------


@pytest.fixture
def prof(course):
    return MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                             user__username="prof")


def run_tagged(account, *, workspace_id: str, course_id: int | str = "", token: str) -> str:
    instance = aws.instance_run(
        account, client_token=token, image_id="ami-12c6146b", instance_type="t3.micro",
        tags={aws.TAG_WORKSPACE: str(workspace_id), aws.TAG_COURSE: str(course_id),
              aws.TAG_MEMBER: "1"})
    return instance.id


def test_a_tagged_machine_with_no_workspace_is_recorded_stopped_and_staff_are_told_once(
        course, prof, fake_aws, mailoutbox):
    admin = UserFactory(username="ops", is_superuser=True)
    account = services.cloud_account_default()
    instance_id = run_tagged(account, workspace_id="999999", course_id=course.pk, token="o-1")

    summary = reconcile_now(account)

    assert summary.orphans == 1
    assert aws_state(fake_aws, instance_id) == "stopped"
    orphan = OrphanInstance.objects.get()
    assert orphan.instance_id == instance_id
    assert orphan.action == OrphanInstance.Action.STOPPED
    assert orphan.why == "workspace 999999 does not exist"
    assert orphan.course_id == course.pk
    [mail] = mailoutbox
    assert sorted(mail.to) == sorted([prof.email, admin.email])
    assert "CS229" in mail.subject
    assert instance_id in mail.body

    again = reconcile_now(account)  # notes that AWS has finished stopping it
    assert again.orphans == 0 and again.stopped == 0
    assert len(mailoutbox) == 1
    assert OrphanInstance.objects.get().aws_state == "stopped"
    with CaptureQueriesContext(connection) as queries:
        reconcile_now(account)
    assert writes(queries) == []


def test_a_machine_left_running_for_a_terminated_workspace_is_an_orphan(running, fake_aws):
    Workspace.objects.filter(pk=running.pk).update(state=State.TERMINATED)

    summary = reconcile_now(running)

    assert summary.orphans == 1
    assert OrphanInstance.objects.get().why == f"workspace {running.pk} is terminated"
    assert aws_state(fake_aws, running.instance_id) == "stopped"


def test_a_second_machine_for_a_live_workspace_is_an_orphan_and_the_first_is_kept(
        running, fake_aws):
    second = run_tagged(running.cloud_account, workspace_id=running.pk, token="dup")

    reconcile_now(running)

    running.refresh_from_db()
    assert running.state == State.RUNNING
    assert aws_state(fake_aws, running.instance_id) == "running"
    assert aws_state(fake_aws, second) == "stopped"
    assert OrphanInstance.objects.get().instance_id == second


def test_an_orphan_terminated_by_staff_is_marked_resolved(course, fake_aws):
    account = services.cloud_account_default()
    instance_id = run_tagged(account, workspace_id="999999", token="o-2")
    reconcile_now(account)
    ec2(fake_aws).terminate_instances(InstanceIds=[instance_id])

    reconcile_now(account)

    assert OrphanInstance.objects.get().resolved_at is not None


# --- the launch task that died ----------------------------------------------------------------


def test_a_launch_killed_between_run_instances_and_the_database_write_is_adopted_by_reconcile(
        student, approved, fake_aws, monkeypatch, django_capture_on_commit_callbacks):
    workspace = launch(student, run_task=False, capture=django_capture_on_commit_callbacks)

    def die(**kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(services, "workspace_transition", die)
    with pytest.raises(SystemExit):
        services.workspace_provision(workspace_id=workspace.pk)
    monkeypatch.undo()
    assert Workspace.objects.get(pk=workspace.pk).instance_id == ""

    early = reconcile_now(workspace, at=timezone.now())  # still within the launch's grace
    assert (early.adopted, early.orphans) == (0, 0)

    summary = reconcile_now(workspace)

    workspace.refresh_from_db()
    [instance] = instances_tagged(fake_aws, workspace.pk)
    assert summary.adopted == 1
    assert workspace.state == State.RUNNING
    assert workspace.instance_id == instance["InstanceId"]
    assert Workspace.objects.filter(owner=student, state=State.RUNNING).count() == 1
    assert OrphanInstance.objects.get().action == OrphanInstance.Action.ADOPTED


def test_a_launch_task_that_died_before_run_instances_is_enqueued_again(
        student, approved, fake_aws, django_capture_on_commit_callbacks):
    workspace = launch(student, run_task=False, capture=django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        summary = reconcile_now(workspace)

    workspace.refresh_from_db()
    assert summary.relaunched == 1
    assert workspace.state == State.RUNNING
    assert len(instances_tagged(fake_aws, workspace.pk)) == 1


# --- paging, calls, queries ---------------------------------------------------------------------


def test_the_listing_pages_through_every_tagged_machine_in_the_fewest_calls(course, fake_aws):
    account = services.cloud_account_default()
    for n in range(12):
        run_tagged(account, workspace_id=f"{900000 + n}", token=f"page-{n}")
    aws.instance_run(account, client_token="untagged", image_id="ami-12c6146b",
                     instance_type="t3.micro", tags={"Name": "not lens"})

    listing = aws.instances_describe_tagged(account, page_size=5)

    assert len(listing.instances) == 12
    assert listing.calls == 3  # ⌈12 / 5⌉
    assert aws.instances_describe_tagged(account).calls == 1


def test_an_idle_reconcile_makes_no_writes_and_its_queries_do_not_grow_with_workspaces(
        student, approved, django_capture_on_commit_callbacks):
    def idle_queries() -> int:
        account = services.cloud_account_default()
        reconcile_now(account)  # settle anything outstanding
        with CaptureQueriesContext(connection) as queries:
            summary = reconcile_now(account)
        assert summary.changed == 0
        assert writes(queries) == []
        return len(queries)

    launch(student, "one", capture=django_capture_on_commit_callbacks)
    with_one = idle_queries()
    for n in range(6):
        launch(student, f"more-{n}", capture=django_capture_on_commit_callbacks)

    assert idle_queries() == with_one == 2  # the workspaces, the open orphan records


def test_a_reconcile_of_an_account_already_being_reconciled_is_skipped(running):
    with reconcile.reconcile_lock(account_id=running.cloud_account_id) as acquired:
        assert acquired
        assert reconcile.reconcile_all() == {running.cloud_account_id: None}

    assert reconcile.reconcile_all()[running.cloud_account_id].seen == 1


def test_the_reconcile_task_runs_on_beat_every_minute(running, fake_aws):
    from lens.celery import app

    entry = next(e for e in app.conf.beat_schedule.values()
                 if e["task"] == "provisioning.tasks.reconcile_task")
    assert entry["schedule"] == 60.0
    ec2(fake_aws).terminate_instances(InstanceIds=[running.instance_id])

    result = tasks.reconcile_task.delay().get()

    assert result[str(running.cloud_account_id)]["seen"] == 1
    running.refresh_from_db()
    assert running.state == State.TERMINATED


# --- workspaces waiting for a capacity slot ---------------------------------------------


def test_a_workspace_waiting_for_a_slot_is_left_in_line_by_reconcile(
        student, approved, django_capture_on_commit_callbacks):
    approved.capacity = 1
    approved.save()
    holder = launch(student, capture=django_capture_on_commit_callbacks)
    other = MembershipFactory(course=student.course)
    with django_capture_on_commit_callbacks(execute=False):
        waiting = services.workspace_launch(membership=other, template_slug="ml-cpu-student",
                                            name="hw1", actor=other.user)
    assert waiting.state == State.QUEUED

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        summary = reconcile_now(holder, at=timezone.now() + timedelta(hours=1))

    waiting.refresh_from_db()
    assert waiting.state == State.QUEUED and not waiting.instance_id
    assert summary.relaunched == 0 and callbacks == []
