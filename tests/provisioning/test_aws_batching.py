"""Stops and terminates go to AWS in batches of up to 1,000, and one bad id spoils none."""

import pytest
from django.utils import timezone

from provisioning import aws, enforcement, ratelimit, services, tasks
from provisioning.models import CloudAccount, Workspace
from provisioning.states import State
from tests.conftest import ec2

MISSING = "i-0123456789abcdef0"


@pytest.fixture
def account(db, fake_aws):
    return CloudAccount.objects.create(name="test", region="us-east-1", endpoint_url=fake_aws)


@pytest.fixture
def no_rate_limits(settings):
    settings.LENS_EC2_RATE_LIMITS = False
    ratelimit.buckets_reset()


def spy_calls(monkeypatch, account, operation: str, *, fail_for: str = "") -> list[list[str]]:
    """Record each call's ids; answer like AWS, refusing the whole call if it names `fail_for`."""
    from botocore.exceptions import ClientError

    client = aws._client(account, "ec2")
    calls = []

    def call(*, InstanceIds, **params):  # noqa: N803 (boto3's parameter name)
        calls.append(list(InstanceIds))
        if fail_for in InstanceIds:
            raise ClientError({"Error": {"Code": "IncorrectInstanceState",
                                         "Message": f"The instance '{fail_for}' is not in a "
                                                    "state from which it can be stopped."}},
                              "StopInstances")
        return {}

    monkeypatch.setattr(client, operation, call)
    return calls


def machines(endpoint: str, count: int) -> list[str]:
    response = ec2(endpoint).run_instances(ImageId="ami-12c6146b", InstanceType="t3.micro",
                                           MinCount=count, MaxCount=count)
    return [i["InstanceId"] for i in response["Instances"]]


def states(endpoint: str, ids: list[str]) -> set[str]:
    response = ec2(endpoint).describe_instances(InstanceIds=ids)
    return {i["State"]["Name"] for r in response["Reservations"] for i in r["Instances"]}


@pytest.mark.usefixtures("no_rate_limits")
def test_stopping_2500_instances_takes_three_calls(account, monkeypatch):
    calls = spy_calls(monkeypatch, account, "stop_instances")
    ids = [f"i-{n:017x}" for n in range(2500)]

    result = aws.instances_stop(account, ids)

    assert [len(c) for c in calls] == [1000, 1000, 500]
    assert result.done == ids
    assert result.failed == {} and result.deferred == []


@pytest.mark.usefixtures("no_rate_limits")
def test_a_refused_batch_is_halved_until_the_one_bad_id_is_alone(account, monkeypatch):
    ids = [f"i-{n:017x}" for n in range(1000)]
    bad = ids[617]
    calls = spy_calls(monkeypatch, account, "stop_instances", fail_for=bad)

    result = aws.instances_stop(account, ids)

    assert sorted(result.done) == sorted(set(ids) - {bad})
    assert list(result.failed) == [bad]
    assert "IncorrectInstanceState" in str(result.failed[bad])
    assert len(calls) == result.calls <= 1 + 2 * 10  # two halves per level, log2(1000) levels


def test_a_batch_with_an_id_aws_does_not_know_stops_all_the_others(account, fake_aws):
    good = machines(fake_aws, 5)
    ids = good[:2] + [MISSING] + good[2:]

    result = aws.instances_stop(account, ids)

    assert sorted(result.done) == sorted(good)
    assert isinstance(result.failed[MISSING], aws.InstanceNotFound)
    assert states(fake_aws, good) <= {"stopping", "stopped"}


def test_terminate_batches_the_same_way(account, fake_aws):
    good = machines(fake_aws, 3)

    result = aws.instances_terminate(account, [MISSING, *good])

    assert sorted(result.done) == sorted(good)
    assert list(result.failed) == [MISSING]
    assert states(fake_aws, good) <= {"shutting-down", "terminated"}


def test_throttling_in_a_batch_is_not_mistaken_for_a_bad_id(account, monkeypatch):
    from botocore.exceptions import ClientError

    client = aws._client(account, "ec2")

    def throttled(**params):
        raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "Slow down."}},
                          "StopInstances")

    monkeypatch.setattr(client, "stop_instances", throttled)

    with pytest.raises(aws.Throttled):
        aws.instances_stop(account, ["i-00000000000000001", "i-00000000000000002"])


def test_a_stop_beyond_the_stop_bucket_is_deferred_not_sent(account, monkeypatch):
    calls = spy_calls(monkeypatch, account, "stop_instances")
    ids = [f"i-{n:017x}" for n in range(2500)]

    result = aws.instances_stop(account, ids)

    # 1,000 instances at once, then EC2 refills 20 a second: the rest must wait.
    assert [len(c) for c in calls] == [1000]
    assert result.deferred == ids[1000:]
    assert 45 < result.retry_after <= 50


# --- the batched path for several workspaces ----------------------------------------------


@pytest.fixture
def running(student, approved, django_capture_on_commit_callbacks):
    """Three running workspaces of one student."""
    workspaces = []
    for name in ("hw1", "hw2", "hw3"):
        with django_capture_on_commit_callbacks(execute=True):
            workspace = services.workspace_launch(membership=student, name=name,
                                                  template_slug="ml-cpu-student",
                                                  actor=student.user)
        workspace.refresh_from_db()
        assert workspace.state == State.RUNNING
        workspaces.append(workspace)
    return workspaces


def count_stop_calls(monkeypatch, account) -> list[list[str]]:
    client = aws._client(account, "ec2")
    real, calls = client.stop_instances, []

    def stop_instances(**params):
        calls.append(params["InstanceIds"])
        return real(**params)

    monkeypatch.setattr(client, "stop_instances", stop_instances)
    return calls


def test_revoking_a_member_stops_all_their_machines_in_one_call(
        running, student, monkeypatch, django_capture_on_commit_callbacks, fake_aws):
    calls = count_stop_calls(monkeypatch, running[0].cloud_account)

    with django_capture_on_commit_callbacks(execute=True):
        asked = services.member_workspaces_stop(membership_id=student.pk, actor=None,
                                                reason=Workspace.StopReason.REVOKED)

    assert asked == 3
    assert [sorted(c) for c in calls] == [sorted(w.instance_id for w in running)]
    for workspace in running:
        workspace.refresh_from_db()
        assert (workspace.state, workspace.stop_reason) == (State.STOPPED, "revoked")


def test_a_batched_stop_folds_in_a_vanished_instance_and_stops_the_rest(
        running, student, django_capture_on_commit_callbacks):
    gone = running[1]
    Workspace.objects.filter(pk=gone.pk).update(instance_id=MISSING)

    with django_capture_on_commit_callbacks(execute=True):
        services.member_workspaces_stop(membership_id=student.pk, actor=None,
                                        reason=Workspace.StopReason.STAFF)

    states_now = {w.pk: w for w in Workspace.objects.filter(owner=student)}
    assert states_now[gone.pk].state == State.TERMINATED
    assert "no longer has the instance" in states_now[gone.pk].failure_reason
    assert {states_now[w.pk].state for w in (running[0], running[2])} == {State.STOPPED}


def test_a_budget_run_out_stops_the_member_s_machines_in_one_call(
        running, student, monkeypatch, django_capture_on_commit_callbacks):
    calls = count_stop_calls(monkeypatch, running[0].cloud_account)
    student.budget_cap = 0
    student.save()

    with django_capture_on_commit_callbacks(execute=True):
        verdict = enforcement.member_budget_enforce(membership_id=student.pk,
                                                    now=timezone.now())

    assert verdict.stop_reason == "budget"
    assert len(calls) == 1 and len(calls[0]) == 3
    assert set(Workspace.objects.filter(owner=student).values_list("state", flat=True)) == {
        State.STOPPED}


def test_the_batched_stop_task_does_nothing_for_workspaces_no_longer_stopping(
        running, monkeypatch):
    calls = count_stop_calls(monkeypatch, running[0].cloud_account)

    tasks.workspaces_stop_task.delay([w.pk for w in running])

    assert calls == []
    assert set(Workspace.objects.filter(pk__in=[w.pk for w in running])
               .values_list("state", flat=True)) == {State.RUNNING}
