"""Lens's copy of EC2's token buckets, and what launches do when AWS throttles anyway."""

from types import SimpleNamespace

import pytest
import redis
from botocore.exceptions import ClientError
from celery.exceptions import Retry
from django.conf import settings

from provisioning import aws, ratelimit, services, tasks
from provisioning.ratelimit import BucketSpec, RateLimited, TokenBuckets
from provisioning.states import State
from tests.conftest import instances_tagged

SCOPE = "123456789012:us-east-1"


class FakeClock:
    """Time that moves only when someone sleeps or the test says so."""

    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make_buckets(clock: FakeClock, *, max_wait: float = 1000.0) -> TokenBuckets:
    """A worker process's view of the buckets: its own Redis connection, the shared keys."""
    return TokenBuckets(client=redis.Redis.from_url(settings.REDIS_URL),
                        specs={"run": BucketSpec(5, 2), "stop": BucketSpec(1000, 20),
                               "mutate": BucketSpec(200, 5)},
                        max_wait=max_wait, clock=clock, sleep=clock.sleep)


@pytest.fixture
def clock():
    return FakeClock()


def test_the_run_bucket_lets_a_burst_of_five_through_then_two_a_second(clock):
    buckets = make_buckets(clock)
    start = clock.now

    moments = []
    for _ in range(25):
        buckets.take(scope=SCOPE, name="run")
        moments.append(clock.now - start)

    assert moments[:5] == [0, 0, 0, 0, 0]
    assert moments[5:] == pytest.approx([0.5 * i for i in range(1, 21)])
    after_burst = moments[5:]
    for i, t in enumerate(after_burst):
        assert sum(1 for u in after_burst if t <= u < t + 1) <= 2, f"more than 2/s at {i}"


def test_an_idle_bucket_refills_to_its_burst_and_no_further(clock):
    buckets = make_buckets(clock)
    for _ in range(5):
        buckets.take(scope=SCOPE, name="run")

    clock.now += 3600
    waits = [buckets.take(scope=SCOPE, name="run") for _ in range(6)]

    assert waits == [0, 0, 0, 0, 0, pytest.approx(0.5)]


def test_two_worker_processes_share_one_bucket(clock):
    first, second = make_buckets(clock, max_wait=0), make_buckets(clock, max_wait=0)

    for _ in range(3):
        first.take(scope=SCOPE, name="run")
    for _ in range(2):
        second.take(scope=SCOPE, name="run")

    with pytest.raises(RateLimited):
        first.take(scope=SCOPE, name="run")
    with pytest.raises(RateLimited):
        second.take(scope=SCOPE, name="run")
    # Another account or region has buckets of its own.
    assert second.take(scope="210987654321:us-east-1", name="run") == 0


def test_a_caller_who_cannot_wait_keeps_its_place_in_the_queue(clock):
    buckets = make_buckets(clock, max_wait=0)
    for _ in range(5):
        buckets.take(scope=SCOPE, name="run")

    waits = []
    for holder in ("ws-1", "ws-2", "ws-3"):
        with pytest.raises(RateLimited) as raised:
            buckets.take(scope=SCOPE, name="run", holder=holder)
        waits.append(raised.value.retry_after)
    assert waits == pytest.approx([0.5, 1.0, 1.5])

    # Asking again early keeps the same slot rather than queueing behind the others.
    with pytest.raises(RateLimited) as again:
        buckets.take(scope=SCOPE, name="run", holder="ws-2")
    assert again.value.retry_after == pytest.approx(1.0)

    clock.now += 1.0
    assert buckets.take(scope=SCOPE, name="run", holder="ws-1") == 0
    assert buckets.take(scope=SCOPE, name="run", holder="ws-2") == 0
    # A newcomer queues behind ws-3, who has not come back yet.
    with pytest.raises(RateLimited) as newcomer:
        buckets.take(scope=SCOPE, name="run", holder="ws-4")
    assert newcomer.value.retry_after == pytest.approx(1.0)


def test_a_caller_without_a_holder_who_cannot_wait_takes_nothing(clock):
    buckets = make_buckets(clock, max_wait=0)
    for _ in range(5):
        buckets.take(scope=SCOPE, name="run")

    for _ in range(3):
        with pytest.raises(RateLimited):
            buckets.take(scope=SCOPE, name="run")

    clock.now += 0.5
    assert buckets.take(scope=SCOPE, name="run") == 0


def test_a_stop_costs_one_token_per_instance(clock):
    buckets = make_buckets(clock, max_wait=0)

    buckets.take(scope=SCOPE, name="stop", cost=1000)
    with pytest.raises(RateLimited) as raised:
        buckets.take(scope=SCOPE, name="stop", cost=100, holder="batch")

    assert raised.value.retry_after == pytest.approx(5.0)  # 100 instances at 20/s


def test_aws_throttling_us_anyway_empties_the_bucket(clock):
    buckets = make_buckets(clock)
    buckets.take(scope=SCOPE, name="run")

    buckets.drain(scope=SCOPE, name="run")

    assert buckets.level(scope=SCOPE, name="run") == 0
    assert buckets.take(scope=SCOPE, name="run") == pytest.approx(0.5)


# --- launches --------------------------------------------------------------------------


@pytest.fixture
def requested(student, approved, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return services.workspace_launch(membership=student, template_slug="ml-cpu-student",
                                         name="hw1", actor=student.user)


@pytest.fixture
def eager_retries():
    from lens.celery import app

    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = True


def request_limit_exceeded() -> ClientError:
    return ClientError({"Error": {"Code": "RequestLimitExceeded",
                                  "Message": "Request limit exceeded."},
                        "ResponseMetadata": {"HTTPStatusCode": 503}}, "RunInstances")


def throttle_run_instances(monkeypatch, account, times: int) -> list[int]:
    """AWS answers RunInstances with RequestLimitExceeded `times` times, then for real."""
    client = aws._client(account, "ec2")
    real, attempts = client.run_instances, []

    def run_instances(**params):
        attempts.append(1)
        if len(attempts) <= times:
            raise request_limit_exceeded()
        return real(**params)

    monkeypatch.setattr(client, "run_instances", run_instances)
    return attempts


@pytest.mark.usefixtures("eager_retries")
def test_a_launch_aws_throttles_twice_backs_off_and_still_ends_running(
        requested, monkeypatch, fake_aws):
    attempts = throttle_run_instances(monkeypatch, requested.cloud_account, times=2)
    backoffs = []
    real_backoff = tasks.backoff
    monkeypatch.setattr(tasks, "backoff", lambda retries: backoffs.append(
        real_backoff(retries)) or backoffs[-1])

    tasks.workspace_launch_task.delay(requested.pk)

    requested.refresh_from_db()
    assert requested.state == State.RUNNING
    assert len(attempts) == 3
    assert len(instances_tagged(fake_aws, requested.pk)) == 1
    assert 0.5 <= backoffs[0] <= 1.0 and 1.0 <= backoffs[1] <= 2.0  # exponential, jittered


def test_backoff_grows_exponentially_with_jitter_up_to_a_cap():
    for retries, (low, high) in {0: (0.5, 1), 3: (4, 8), 6: (32, 64), 20: (45, 90)}.items():
        delays = {tasks.backoff(retries) for _ in range(50)}
        assert all(low <= d <= high for d in delays)
        assert len(delays) > 1  # jittered, so throttled workers do not return together


@pytest.mark.usefixtures("eager_retries")
def test_a_launch_aws_keeps_throttling_fails_after_many_tries_with_the_reason(
        requested, monkeypatch, settings):
    settings.LENS_EC2_RATE_LIMITS = False  # no bucket waits between the tries, to be quick
    ratelimit.buckets_reset()
    attempts = throttle_run_instances(monkeypatch, requested.cloud_account, times=1000)

    tasks.workspace_launch_task.delay(requested.pk)

    requested.refresh_from_db()
    assert len(attempts) == tasks.MAX_RETRIES + 1
    assert requested.state == State.FAILED
    assert "RequestLimitExceeded: Request limit exceeded." in requested.failure_reason


def test_a_launch_that_must_wait_for_its_turn_is_requeued_then_runs_on_its_reserved_slot(
        requested, monkeypatch, clock, fake_aws):
    buckets = make_buckets(clock, max_wait=2)
    monkeypatch.setattr(ratelimit, "_buckets", buckets)
    scope = aws._scope(requested.cloud_account)
    buckets.take(scope=scope, name="run", cost=5)
    with pytest.raises(RateLimited):  # eight launches queued ahead: 4 s of tokens
        buckets.take(scope=scope, name="run", cost=8, holder="ahead")
    task = SimpleNamespace(request=SimpleNamespace(retries=0, is_eager=False), countdowns=[])

    def retry(exc, countdown):
        task.countdowns.append(countdown)
        return Retry(exc=exc, when=countdown)

    task.retry = retry

    with pytest.raises(Retry):
        tasks._run(task, services.workspace_provision, requested.pk)
    requested.refresh_from_db()
    assert requested.state == State.REQUESTED
    assert instances_tagged(fake_aws, requested.pk) == []
    assert task.countdowns == [pytest.approx(4.5)]

    clock.now += 4.5
    task.request.retries = 1
    tasks._run(task, services.workspace_provision, requested.pk)

    requested.refresh_from_db()
    assert requested.state == State.RUNNING
    # The slot was paid for once: a newcomer now waits one token's time, not two.
    assert buckets.take(scope=scope, name="run") == pytest.approx(0.5)


def test_volume_key_and_network_changes_take_turns_in_the_mutate_bucket_and_describes_do_not(
        db, settings):
    from provisioning.services import cloud_account_default

    settings.LENS_EC2_MUTATE_BURST = 2
    settings.LENS_EC2_MUTATE_PER_SECOND = 0.01  # the next token is 100 s away
    ratelimit.buckets_reset()
    account = cloud_account_default()
    tags = {"lens:test": "mutate"}

    first = aws.volume_create(account, availability_zone="us-east-1a", size_gib=1, tags=tags)
    aws.volume_create(account, availability_zone="us-east-1a", size_gib=1, tags=tags)
    with pytest.raises(RateLimited) as limited:
        aws.volume_create(account, availability_zone="us-east-1a", size_gib=1, tags=tags)
    with pytest.raises(RateLimited):
        aws.key_pair_ensure(account, name="lens-u1-test", public_key="ssh-ed25519 AAAA x",
                            tags=tags)

    assert limited.value.retry_after > 90
    assert aws.volume_get(account, first.id).id == first.id  # describes are not paced
