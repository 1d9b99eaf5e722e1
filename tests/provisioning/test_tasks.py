from decimal import Decimal

import pytest

from provisioning import aws, services, tasks
from provisioning.models import Workspace
from provisioning.states import State
from tests.conftest import ec2, instances_tagged


@pytest.fixture
def requested(student, approved, django_capture_on_commit_callbacks):
    """A workspace the launch service created, its task not yet run."""
    with django_capture_on_commit_callbacks(execute=False):
        return services.workspace_launch(membership=student, template_slug="ml-cpu-student",
                                         name="hw1", actor=student.user)


def test_the_launch_task_brings_a_workspace_to_running_with_lens_tags(requested, fake_aws):
    tasks.workspace_launch_task.delay(requested.pk)

    requested.refresh_from_db()
    assert requested.state == State.RUNNING
    assert requested.instance_id.startswith("i-")
    assert requested.private_ip
    [instance] = instances_tagged(fake_aws, requested.pk)
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["lens:course"] == str(requested.owner.course_id)
    assert tags["lens:member"] == str(requested.owner_id)
    assert instance["InstanceType"] == "t3.medium"
    assert [e.to_state for e in requested.events.all()] == ["requested", "pending", "running"]


def test_running_the_launch_task_twice_leaves_exactly_one_instance(requested, fake_aws):
    tasks.workspace_launch_task.delay(requested.pk)
    tasks.workspace_launch_task.delay(requested.pk)

    assert len(instances_tagged(fake_aws, requested.pk)) == 1


def test_a_launch_that_died_after_run_instances_adopts_the_instance_instead_of_making_another(
        requested, fake_aws, monkeypatch):
    # First attempt: RunInstances succeeds, then the worker dies before the database write.
    real_transition = services.workspace_transition

    def die(**kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(services, "workspace_transition", die)
    with pytest.raises(SystemExit):
        services.workspace_provision(workspace_id=requested.pk)
    monkeypatch.setattr(services, "workspace_transition", real_transition)

    tasks.workspace_launch_task.delay(requested.pk)

    requested.refresh_from_db()
    [instance] = instances_tagged(fake_aws, requested.pk)
    assert requested.state == State.RUNNING
    assert requested.instance_id == instance["InstanceId"]


def test_run_instances_carries_the_workspace_client_token(requested, monkeypatch):
    seen = {}
    real_run = aws.instance_run

    def spy(account, **kwargs):
        seen.update(kwargs)
        return real_run(account, **kwargs)

    monkeypatch.setattr(aws, "instance_run", spy)
    tasks.workspace_launch_task.delay(requested.pk)

    assert seen["client_token"] == str(requested.client_token)


@pytest.fixture
def eager_retries():
    """Let Celery run retries in-process, one after another, as a worker would later."""
    from lens.celery import app

    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = True


@pytest.mark.usefixtures("eager_retries")
def test_throttling_is_retried_and_the_launch_still_succeeds(requested, monkeypatch, fake_aws):
    real_run, calls = aws.instance_run, []

    def throttled_twice(account, **kwargs):
        calls.append(1)
        if len(calls) <= 2:
            raise aws.Throttled("RequestLimitExceeded: Request limit exceeded.")
        return real_run(account, **kwargs)

    monkeypatch.setattr(aws, "instance_run", throttled_twice)
    tasks.workspace_launch_task.delay(requested.pk)

    requested.refresh_from_db()
    assert len(calls) == 3
    assert requested.state == State.RUNNING
    assert len(instances_tagged(fake_aws, requested.pk)) == 1


@pytest.mark.usefixtures("eager_retries")
def test_giving_up_on_throttling_records_the_reason_on_the_workspace(requested, monkeypatch):
    def always_throttled(account, **kwargs):
        raise aws.Throttled("RequestLimitExceeded: Request limit exceeded.")

    monkeypatch.setattr(aws, "instance_run", always_throttled)
    tasks.workspace_launch_task.delay(requested.pk)

    requested.refresh_from_db()
    assert requested.state == State.FAILED
    assert "Request limit exceeded" in requested.failure_reason


def test_an_image_aws_does_not_know_fails_at_once_with_aws_s_reason(requested):
    requested.template.image = "/lens/no-such-parameter"
    requested.template.save()

    tasks.workspace_launch_task.delay(requested.pk)

    requested.refresh_from_db()
    assert requested.state == State.FAILED
    assert "ParameterNotFound" in requested.failure_reason


def test_stop_and_start_follow_ec2_through_the_state_machine(
        requested, fake_aws, django_capture_on_commit_callbacks):
    tasks.workspace_launch_task.delay(requested.pk)
    requested.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        services.workspace_stop(workspace=requested, actor=requested.owner.user)
    requested.refresh_from_db()
    assert requested.state == State.STOPPED
    assert requested.stop_reason == "user"
    state = ec2(fake_aws).describe_instances(InstanceIds=[requested.instance_id])
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "stopped"

    with django_capture_on_commit_callbacks(execute=True):
        services.workspace_start(workspace=requested, actor=requested.owner.user)
    requested.refresh_from_db()
    assert requested.state == State.RUNNING
    assert [e.to_state for e in requested.events.all()][-4:] == [
        "stopping", "stopped", "pending", "running"]


def test_a_task_for_a_workspace_already_done_returns_quietly(requested, fake_aws):
    tasks.workspace_launch_task.delay(requested.pk)
    events = requested.events.count()

    tasks.workspace_launch_task.delay(requested.pk)
    tasks.workspace_stop_task.delay(requested.pk)  # not stopping: nothing to do
    tasks.workspace_launch_task.delay(999999)  # deleted or never existed

    assert requested.events.count() == events


def test_an_instance_aws_no_longer_has_is_folded_in_as_terminated_with_the_reason(
        requested, django_capture_on_commit_callbacks, client):
    tasks.workspace_launch_task.delay(requested.pk)
    requested.refresh_from_db()
    Workspace.objects.filter(pk=requested.pk).update(instance_id="i-00000000000000000")
    requested.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        services.workspace_stop(workspace=requested, actor=requested.owner.user)

    requested.refresh_from_db()
    assert requested.state == State.TERMINATED
    assert "no longer has the instance" in requested.failure_reason
    client.force_login(requested.owner.user)
    assert "no longer has the instance" in client.get("/").content.decode()


def test_a_stopped_workspace_shows_its_session_summary(
        requested, django_capture_on_commit_callbacks, client):
    import time_machine
    from django.utils import timezone

    with time_machine.travel(timezone.now(), tick=False) as clock:
        tasks.workspace_launch_task.delay(requested.pk)
        requested.refresh_from_db()
        clock.shift(timezone.timedelta(hours=2, minutes=13))
        with django_capture_on_commit_callbacks(execute=True):
            services.workspace_stop(workspace=requested, actor=requested.owner.user)

    requested.refresh_from_db()
    assert requested.last_session_seconds == 2 * 3600 + 13 * 60
    assert requested.last_session_cost == Decimal("0.092213")  # 2.2167 h × $0.0416
    client.force_login(requested.owner.user)
    html = client.get("/").content.decode()
    # Term spend also counts the disks (30 GiB of gp3 for the same 2 h 13 min).
    assert "Last session: 2 h 13 min, $0.0922 · term spend $0.0995 (0% of $50.00)" in html


def test_budget_stops_go_to_the_urgent_queue_which_workers_consume_first(settings):
    from lens.celery import app

    route = app.amqp.router.route({}, "provisioning.tasks.workspace_stop_task")
    check = app.amqp.router.route({}, "provisioning.tasks.member_budget_check_task")
    launch = app.amqp.router.route({}, "provisioning.tasks.workspace_launch_task")

    assert route["queue"].name == check["queue"].name == settings.CELERY_URGENT_QUEUE
    assert launch["queue"].name == settings.CELERY_TASK_DEFAULT_QUEUE
    assert [q.name for q in app.conf.task_queues][0] == settings.CELERY_URGENT_QUEUE


def test_a_task_sent_to_the_broker_lands_in_exactly_one_queue(settings):
    """A shared routing key would copy every launch into the urgent queue too."""
    from lens.celery import app
    from provisioning.tasks import workspace_launch_task, workspace_stop_task

    app.conf.task_always_eager = False
    with app.connection_for_write() as conn:
        channel = conn.default_channel

        def depth(name):
            return channel.queue_declare(queue=name, passive=True).message_count

        urgent, default = settings.CELERY_URGENT_QUEUE, settings.CELERY_TASK_DEFAULT_QUEUE
        for queue in app.amqp.queues.values():
            queue(channel).declare()  # queue, exchange and binding, as a worker declares them
        for name in (urgent, default):
            channel.queue_purge(name)
        try:
            workspace_stop_task.apply_async((0,), connection=conn)
            workspace_launch_task.apply_async((0,), connection=conn)
            assert (depth(urgent), depth(default)) == (1, 1)
        finally:
            for name in (urgent, default):
                channel.queue_purge(name)
