"""Launch storm: a class of N (default 400) clicks Launch at the same moment.

Every launch goes through the real launch service
(`provisioning.services.workspace_launch`: policy, budget guard, row,
`workspace_launch_task` on commit) to a real Celery worker (prefork, several
processes, the Redis broker), which talks to a moto server started here.

The fake AWS also enforces EC2's own RunInstances/StartInstances bucket (5
requests deep, 2 a second, per account and region; Redis-backed so it is one
bucket across the worker's processes) and answers RequestLimitExceeded past
it, the way EC2 would. So the run shows both that Lens's own bucket keeps the
launches under AWS's limit and that launches queue instead of failing.

Printed: time from the first click to every workspace running, failures (goal
0), Lens's re-queues (a launch waiting for its turn), RequestLimitExceeded
answers from the fake AWS, and the peak AWS call rate in any one-second
window: RunInstances alone (at most the burst of 5, then about 2/s) and all
calls together.

    export LENS_VAR_DIR=… LENS_PG_PORT=… LENS_REDIS_PORT=… LENS_MOTO_PORT=…
    .venv/bin/python -m lens.devstack run -- env DEBUG=true \\
        .venv/bin/python bench/launch_storm.py [--n 400] [--processes 4] [--no-aws-limits]

It works in a throwaway database (`lens_storm`, created and dropped) and a
Celery queue of its own, so a running demo is not disturbed. At 2 launches a
second, 400 launches take a little over 200 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.budget_overrun import (  # noqa: E402
    bench_database_drop,
    bench_database_prepare,
    moto_start,
)

AL2023 = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
CALLS_KEY = "lens-bench:launch-storm:calls"  # + the queue name
AWS_BUCKET_KEY = "lens-bench:launch-storm:aws-run-bucket"
AWS_RUN_BURST, AWS_RUN_PER_SECOND = 5, 2.0
LOGS = ROOT / "var" / "bench-logs"

# EC2's side of the RunInstances bucket: no debt, a call past it is refused.
_AWS_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens, at = tonumber(state[1]) or capacity, tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(now - at, 0) * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], 600)
return {ok, tostring(now)}
"""


# --- inside the worker -------------------------------------------------------------------


def worker_instrument(*, queue: str, aws_limits: bool) -> None:
    """Record every AWS call (time, operation, throttled?) in Redis; play EC2's bucket.

    Wraps the adapter's client factory; Lens's code is not changed.
    """
    import redis
    from botocore.awsrequest import AWSResponse
    from django.conf import settings

    from provisioning import aws

    original = aws._client
    seen: set[int] = set()
    state: dict = {}

    def connection():
        if state.get("pid") != os.getpid():  # one connection per forked process
            state["pid"], state["redis"] = os.getpid(), redis.Redis.from_url(settings.REDIS_URL)
            state["take"] = state["redis"].register_script(_AWS_TAKE)
        return state

    def before_call(model, **_):
        conn = connection()
        throttled = False
        if aws_limits and model.name in {"RunInstances", "StartInstances"}:
            ok, now = conn["take"](keys=[f"{AWS_BUCKET_KEY}:{queue}"],
                                   args=[AWS_RUN_BURST, AWS_RUN_PER_SECOND])
            throttled = not ok
        else:
            now = time.time()
        conn["redis"].rpush(f"{CALLS_KEY}:{queue}",
                            f"{float(now):.6f} {model.name} {int(throttled)}")
        if throttled:
            return (AWSResponse(None, 503, {}, None),
                    {"Error": {"Code": "RequestLimitExceeded",
                               "Message": "Request limit exceeded."},
                     "ResponseMetadata": {"HTTPStatusCode": 503}})
        return None

    def counted(account, service):
        client = original(account, service)
        if id(client) not in seen:
            seen.add(id(client))
            client.meta.events.register("before-call", before_call)
        return client

    aws._client = counted


def worker_main(args) -> int:
    import django

    django.setup()
    worker_instrument(queue=os.environ["CELERY_QUEUE"], aws_limits=args.aws_limits)
    from lens.celery import app

    app.worker_main(["worker", "--pool=prefork", f"--concurrency={args.processes}",
                     "-l", "info", "-n", f"storm-{os.getpid()}@%h",
                     "--without-gossip", "--without-mingle", "--without-heartbeat"])
    return 0


# --- the storm ---------------------------------------------------------------------------


def class_make(n: int, endpoint: str):
    """A course of n students with one approved template, in bulk."""
    from django.contrib.auth import get_user_model

    from billing.services import prices_load_bundled
    from courses.models import Course, Membership
    from provisioning.models import ApprovedTemplate, CloudAccount, WorkspaceTemplate

    prices_load_bundled()
    CloudAccount.objects.create(name="storm", region="us-east-1", endpoint_url=endpoint,
                                is_default=True)
    course = Course.objects.create(code="STORM101", title="Launch storm", time_zone="UTC",
                                   status=Course.Status.ACTIVE, region="us-east-1",
                                   default_member_budget=Decimal("50"),
                                   max_concurrent_workspaces=1)
    template = WorkspaceTemplate.objects.create(slug="cpu", name="CPU workspace",
                                                image=AL2023, instance_type="t3.medium")
    ApprovedTemplate.objects.create(course=course, template=template)
    User = get_user_model()
    User.objects.bulk_create([User(username=f"storm{i:04d}", email=f"storm{i:04d}@bench.edu")
                              for i in range(n)])
    users = list(User.objects.filter(username__startswith="storm").order_by("username"))
    Membership.objects.bulk_create([
        Membership(course=course, user=u, email=u.email, role=Membership.Role.STUDENT,
                   status=Membership.Status.ACTIVE, budget_cap=Decimal("50"))
        for u in users])
    return list(Membership.objects.filter(course=course).select_related("user", "course"))


def peak_per_second(times: list[float]) -> int:
    """The most calls in any one-second window."""
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def worker_start(args, env: dict, log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--worker", f"--processes={args.processes}"]
    if not args.aws_limits:
        command.append("--no-aws-limits")
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while b"ready." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"The worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def storm_main(args) -> int:
    queue = f"lens-storm-{os.getpid()}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lens.settings")
    os.environ.update({"CELERY_QUEUE": queue, "CHANNEL_LAYER_PREFIX": queue,
                       "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "CELERY_TASK_ALWAYS_EAGER": "false"})
    maintenance = bench_database_prepare(args.database)

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    from lens.celery import app as celery_app
    from provisioning.models import Workspace, WorkspaceEvent
    from provisioning.services import LaunchRefused, workspace_launch
    from provisioning.states import State

    settings.DEBUG = False
    for noisy in ("provisioning", "celery", "werkzeug", "billing"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    celery_app.conf.task_always_eager = False
    call_command("migrate", verbosity=0, interactive=False)
    server, endpoint = moto_start()
    store = redis.Redis.from_url(settings.REDIS_URL)
    store.delete(f"{CALLS_KEY}:{queue}", f"{AWS_BUCKET_KEY}:{queue}")
    log = LOGS / "launch_storm-worker.log"
    worker = None
    try:
        settings.AWS_ENDPOINT_URL = endpoint
        memberships = class_make(args.n, endpoint)
        worker = worker_start(args, {**os.environ, "AWS_ENDPOINT_URL": endpoint,
                                     "LENS_POLL_SECONDS": "1", "DEBUG": "true"}, log)
        print(f"Launch storm: {args.n} launches at once, worker with {args.processes} "
              f"processes, fake AWS {'enforcing' if args.aws_limits else 'without'} EC2's "
              f"RunInstances bucket ({AWS_RUN_BURST} deep, {AWS_RUN_PER_SECOND:g}/s)",
              flush=True)

        refused: list[str] = []

        def click(membership) -> None:
            try:
                workspace_launch(membership=membership, template_slug="cpu", name="lab",
                                 actor=membership.user)
            except LaunchRefused as exc:
                refused.append(exc.message)
            finally:
                connections.close_all()

        clicked = time.time()
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            list(pool.map(click, memberships))
        submitted = time.time() - clicked
        print(f"Submitted in {submitted:.1f} s ({len(refused)} refused)", flush=True)

        deadline = time.monotonic() + args.timeout
        last_report = 0.0
        while True:
            counts = Counter(Workspace.objects.values_list("state", flat=True))
            settled = counts[State.RUNNING] + counts[State.FAILED]
            if time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                print(f"  t+{time.time() - clicked:5.0f} s: " + ", ".join(
                    f"{state} {n}" for state, n in sorted(counts.items())), flush=True)
            if settled >= args.n - len(refused) or time.monotonic() > deadline:
                break
            time.sleep(1)
        ends = list(WorkspaceEvent.objects.filter(to_state=State.RUNNING)
                    .values_list("at", flat=True))
        failed = list(Workspace.objects.filter(state=State.FAILED)
                      .values_list("failure_reason", flat=True))
        unsettled = args.n - len(refused) - counts[State.RUNNING] - counts[State.FAILED]
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        server.stop()

    calls = [line.decode().split() for line in store.lrange(f"{CALLS_KEY}:{queue}", 0, -1)]
    store.delete(f"{CALLS_KEY}:{queue}", f"{AWS_BUCKET_KEY}:{queue}")
    by_op = Counter(op for _, op, _ in calls)
    run_times = [float(t) for t, op, _ in calls if op == "RunInstances"]
    run_ok = [float(t) for t, op, throttled in calls if op == "RunInstances" and throttled == "0"]
    aws_throttled = sum(1 for *_, throttled in calls if throttled == "1")
    worker_log = log.read_text(errors="replace")
    retries = [line for line in worker_log.splitlines()
               if "workspace_launch_task[" in line and " retry: " in line]
    requeued = sum(1 for line in retries if "RateLimited" in line or "rate limit" in line)
    backed_off = len(retries) - requeued
    span = (max(run_ok) - min(run_ok)) if len(run_ok) > 1 else 0.0
    steady = ((len(run_ok) - AWS_RUN_BURST) / span) if span and len(run_ok) > AWS_RUN_BURST \
        else 0.0

    print()
    all_running = (max(ends).timestamp() - clicked) if ends else float("nan")
    print(f"Time to all running: {all_running:.1f} s "
          f"({counts[State.RUNNING]} of {args.n} running)")
    failures = len(refused) + len(failed) + unsettled
    print(f"Failures: {failures} (goal 0): {len(refused)} refused, {len(failed)} failed, "
          f"{unsettled} not running after {args.timeout} s")
    for reason, n in Counter(failed + refused).most_common(5):
        print(f"  {n} x {reason}")
    print(f"Launch tasks re-queued to wait for their turn in Lens's bucket: {requeued}; "
          f"retried after an AWS error: {backed_off}")
    print(f"RequestLimitExceeded answered by the fake AWS: {aws_throttled}")
    print(f"Peak RunInstances calls in any 1 s: {peak_per_second(run_times)} "
          f"(EC2 allows a burst of {AWS_RUN_BURST}, then {AWS_RUN_PER_SECOND:g}/s); "
          f"after the burst {steady:.2f}/s on average over {span:.0f} s")
    print(f"Peak AWS calls of any kind in any 1 s: {peak_per_second([float(t) for t, *_ in calls])}"
          f"; {len(calls)} calls in all (" + ", ".join(f"{op} {n}" for op, n in
                                                   by_op.most_common()) + ")")
    if not args.keep_db:
        bench_database_drop(maintenance, args.database)
    return 0 if failures == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="launches (students)")
    parser.add_argument("--processes", type=int, default=4, help="worker processes")
    parser.add_argument("--threads", type=int, default=8,
                        help="threads clicking Launch at once")
    parser.add_argument("--timeout", type=int, default=0,
                        help="seconds to wait for every launch (default n/2 + 120)")
    parser.add_argument("--no-aws-limits", dest="aws_limits", action="store_false",
                        help="the fake AWS does not throttle RunInstances")
    parser.add_argument("--database", default="lens_storm")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)
    # Pacing takes n/2 s; each machine then needs its home volume made and attached.
    args.timeout = args.timeout or args.n // 2 + 300
    return storm_main(args)


if __name__ == "__main__":
    sys.exit(main())
