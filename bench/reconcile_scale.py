"""Reconcile at scale: AWS calls, time and database queries per reconcile of N machines.

N (default 10,000) Lens-tagged instances run in a moto server started here,
each with its workspace in the database (running, one per student). Then:

- an idle reconcile (nothing to fold): DescribeInstances calls against the
  floor ⌈N/1000⌉, time, and database queries (which must not grow with N);
- a reconcile after 1 % of the machines were stopped in the console: the
  same, plus the transitions it made;
- the idle sweep (batched GetMetricData, floor ⌈N/500⌉; Lens asks three
  metrics a machine, so it makes ⌈3N/500⌉), first and in steady state.

AWS calls are counted at the botocore client (every request the adapter
makes); time is split into time spent waiting for AWS (here moto, which is
far slower per instance than EC2) and Lens's own time.

moto pages DescribeInstances by reservation, while EC2 counts instances, so
every instance is run in a reservation of its own, making the two agree.
Instances are created inside moto's backend in-process (thousands of
RunInstances requests over HTTP would take most of an hour), and two of
moto's lookups that scan the whole account per instance (an instance by id,
a resource's tags) are replaced by direct ones, or 10,000 instances would
take moto hours to describe; neither changes what the reconciler sees.

Run it in the embedded dev stack, with ports and data of its own; it creates
and later drops a throwaway database `lens_bench_reconcile`:

    export LENS_VAR_DIR=$PWD/var/bench LENS_PG_PORT=55443 LENS_REDIS_PORT=56403 \
        LENS_MOTO_PORT=55103 && \
    .venv/bin/python -m lens.devstack run -- env DEBUG=true \
        CHANNEL_LAYER_PREFIX=lens-bench CELERY_QUEUE=lens-bench \
        .venv/bin/python bench/reconcile_scale.py [--n 10000]

Options: --n N (10000), --stopped-share F (0.01), --database NAME, --keep-db.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from budget_overrun import (  # noqa: E402  (a sibling script: its database and moto helpers)
    bench_database_drop,
    bench_database_prepare,
    moto_start,
)

REGION = "us-east-1"
IMAGE = "ami-12c6146b"  # one of moto's bundled AMIs
DESCRIBE_PAGE = 1000  # DescribeInstances' most results per call
METRICS_PER_CALL = 500  # GetMetricData's most queries per call


@dataclass
class Row:
    what: str
    calls: int
    floor: int
    aws_seconds: float
    lens_seconds: float
    queries: int
    changed: int | str = "-"
    by_operation: str = ""

    @property
    def seconds(self) -> float:
        return self.aws_seconds + self.lens_seconds


class AwsMeter:
    """Counts the adapter's AWS requests and the time spent waiting for them."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.seconds = 0.0
        self._started: dict[int, float] = {}

    def install(self) -> None:
        from provisioning import aws

        original, seen = aws._client, set()
        meter = self

        def counted(account, service):
            client = original(account, service)
            if id(client) not in seen:
                seen.add(id(client))
                client.meta.events.register("before-call", meter._before)
                client.meta.events.register("after-call", meter._after)
            return client

        aws._client = counted

    def _before(self, model, context, **_):
        self.calls[model.name] += 1
        context["bench_started"] = time.perf_counter()

    def _after(self, context, **_):
        self.seconds += time.perf_counter() - context.get("bench_started", time.perf_counter())

    def reset(self) -> None:
        self.calls.clear()
        self.seconds = 0.0


def measure(what: str, floor: int, meter: AwsMeter, work: Callable[[], int]) -> Row:
    """Run `work` once, counting AWS calls, AWS time, Lens time and database queries."""
    from django.db import connection

    queries = 0

    def count(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    meter.reset()
    started = time.perf_counter()
    with connection.execute_wrapper(count):  # Django's query log keeps only the last 9,000
        changed = work()
    total = time.perf_counter() - started
    calls = ", ".join(f"{name} {n:,}" for name, n in meter.calls.most_common())
    return Row(what, sum(meter.calls.values()), floor, meter.seconds, total - meter.seconds,
               queries, changed, calls)


# --- the fake fleet ------------------------------------------------------------------------


def moto_backend():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.exceptions import InvalidInstanceIdError
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    def own_tags(self):
        """moto finds a resource's tags by scanning every tag in the account; look them up."""
        if not self.id:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
        return [{"resource_id": self.id, "key": k, "value": v, "resource_type": kind}
                for k, v in self.ec2_backend.tags.get(self.id, {}).items()]

    def newest_first(self, instance_id):
        """moto's lookup scans every instance; the one asked for is nearly always the newest."""
        for reservations in (reversed(self.reservations.values()), self.reservations.values()):
            for reservation in reservations:
                for instance in reservation.instances:
                    if instance.id == instance_id:
                        return instance
        raise InvalidInstanceIdError(instance_id)

    InstanceBackend.get_instance = newest_first
    TaggedEC2Resource.get_tags = own_tags
    return ec2_backends[DEFAULT_ACCOUNT_ID][REGION]


def fleet_make(*, n: int, account) -> list:
    """N students, each with one running workspace on its own tagged instance."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from courses.models import Course, Membership
    from provisioning import aws
    from provisioning.models import Workspace, WorkspaceTemplate
    from provisioning.states import State

    course = Course.objects.create(code="SCALE", title="Reconcile at scale",
                                   status=Course.Status.ACTIVE, time_zone="UTC", region=REGION)
    template = WorkspaceTemplate.objects.create(slug="cpu", name="CPU", instance_type="t3.medium",
                                                image=IMAGE)
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"s{i:05d}", email=f"s{i:05d}@bench.example.edu")
        for i in range(n))
    members = Membership.objects.bulk_create(
        Membership(course=course, user=u, email=u.email, role=Membership.Role.STUDENT,
                   status=Membership.Status.ACTIVE) for u in users)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    workspaces = Workspace.objects.bulk_create(
        Workspace(owner=m, template=template, cloud_account=account, name="main",
                  instance_type="t3.medium", state=State.RUNNING) for m in members)
    backend = moto_backend()
    started = time.perf_counter()
    for n_done, workspace in enumerate(workspaces, 1):
        reservation = backend.run_instances(
            IMAGE, 1, None, [], instance_type="t3.medium", is_instance_type_default=False,
            region_name=REGION, client_token=str(workspace.client_token),
            tags={"instance": {aws.TAG_WORKSPACE: str(workspace.pk),
                               aws.TAG_COURSE: str(course.pk),
                               aws.TAG_MEMBER: str(workspace.owner_id)}})
        workspace.instance_id = reservation.instances[0].id
        if n_done % 2000 == 0:
            print(f"[bench] {n_done:,} instances ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    Workspace.objects.bulk_update(workspaces, ["instance_id"], batch_size=2000)
    Workspace.objects.filter(pk__in=[w.pk for w in workspaces]).update(
        state_changed_at=an_hour_ago)
    return workspaces


# --- the measurements ------------------------------------------------------------------------


def reconcile_measure(*, account, meter: AwsMeter, n: int, what: str) -> Row:
    from provisioning import reconcile

    def work() -> int:
        summary = reconcile.reconcile_account(account=account)
        if summary.seen != n:
            raise SystemExit(f"reconcile saw {summary.seen} instances, expected {n}")
        return summary.changed

    return measure(what, math.ceil(n / DESCRIBE_PAGE), meter, work)


def idle_sweep_measure(*, account, meter: AwsMeter, n: int) -> list[Row] | str:
    """The idle sweep's calls per sweep against ⌈N/500⌉, once `provisioning.idle` exists.

    Every machine is given an idle policy and has been quiet for an hour, so the
    sweep asks CloudWatch about all N of them.
    """
    import provisioning

    spec = importlib.util.find_spec("provisioning.idle")
    here = Path(provisioning.__file__).resolve().parent
    if spec is None or spec.origin is None or Path(spec.origin).resolve().parent != here:
        return "idle sweep: not built yet"  # (an editable install may offer another checkout's)
    from provisioning import idle
    from provisioning.models import WorkspaceTemplate

    WorkspaceTemplate.objects.update(idle_stop_minutes=30)

    def work() -> int:
        summary = idle.idle_sweep(account_id=account.pk)
        if summary.measured != n:
            print(f"[bench] the idle sweep measured {summary.measured:,} of {n:,} machines")
        return len(summary.warned) + len(summary.stopped)

    floor = math.ceil(n / METRICS_PER_CALL)
    # moto has no metrics, so at first every machine looks idle and is warned; the second
    # sweep finds the warnings standing, which is the steady state.
    return [measure("idle sweep, first (changed = warned + stopped)", floor, meter, work),
            measure("idle sweep again, warnings standing", floor, meter, work)]


def table_print(rows: list[Row]) -> None:
    header = ["measurement", "AWS calls", "floor", "AWS s", "Lens s", "total s", "DB queries",
              "changed"]
    body = [[r.what, f"{r.calls:,}", f"{r.floor:,}", f"{r.aws_seconds:.2f}",
             f"{r.lens_seconds:.2f}", f"{r.seconds:.2f}", f"{r.queries:,}", str(r.changed)]
            for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    for k, line in enumerate([header, *body]):
        cells = [cell.ljust(w) if i == 0 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(line, widths, strict=True))]
        print("| " + " | ".join(cells) + " |")
        if k == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="tagged instances (10000)")
    parser.add_argument("--stopped-share", type=float, default=0.01,
                        help="share of machines stopped in the console before the second "
                             "reconcile (0.01)")
    parser.add_argument("--database", default="lens_bench_reconcile")
    parser.add_argument("--keep-db", action="store_true", help="leave the database behind")
    args = parser.parse_args(argv)
    wall = time.perf_counter()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lens.settings")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "testing"  # only ever the fake AWS started below
    os.environ["AWS_DEFAULT_REGION"] = REGION
    maintenance = bench_database_prepare(args.database)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from lens.celery import app as celery_app
    from provisioning import aws
    from provisioning.models import CloudAccount

    settings.DEBUG = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    for noisy in ("provisioning", "celery", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    call_command("migrate", verbosity=0, interactive=False)
    server, endpoint = moto_start()
    rows: list[Row] = []
    notes: list[str] = []
    try:
        settings.AWS_ENDPOINT_URL, settings.AWS_DEFAULT_REGION = endpoint, REGION
        aws.clients_reset()
        celery_app.conf.task_always_eager = True
        meter = AwsMeter()
        meter.install()
        account = CloudAccount.objects.create(name="bench", region=REGION, endpoint_url=endpoint,
                                              is_default=True)
        started = time.perf_counter()
        workspaces = fleet_make(n=args.n, account=account)
        setup = time.perf_counter() - started

        rows.append(reconcile_measure(account=account, meter=meter, n=args.n,
                                      what="reconcile, nothing to fold"))
        stopped = workspaces[:: max(1, round(1 / args.stopped_share))] \
            if args.stopped_share > 0 else []
        if stopped:
            moto_backend().stop_instances([w.instance_id for w in stopped])
            rows.append(reconcile_measure(
                account=account, meter=meter, n=args.n,
                what=f"reconcile, {len(stopped):,} stopped in the console"))
            rows.append(reconcile_measure(account=account, meter=meter, n=args.n,
                                          what="reconcile again, nothing to fold"))
        sweep = idle_sweep_measure(account=account, meter=meter, n=args.n)
        if isinstance(sweep, str):
            notes.append(sweep)
        else:
            rows.extend(sweep)
    finally:
        server.stop()

    print()
    print(f"Reconcile at scale: {args.n:,} Lens-tagged instances in moto, one running "
          f"workspace each (setup {setup:.0f} s)")
    print()
    table_print(rows)
    print()
    print(f"floor = ⌈N/{DESCRIBE_PAGE}⌉ DescribeInstances for a reconcile, ⌈N/{METRICS_PER_CALL}⌉ "
          "GetMetricData for an idle sweep; AWS s = time waiting for moto (far slower per "
          "instance than EC2); Lens s = the rest (folding, database).")
    print("A reconcile that folds changes also makes one StopInstances per 1,000 machines it "
          "must stop, and the state transitions' own queries (per changed workspace).")
    for row in rows:
        print(f"  {row.what}: {row.by_operation or 'no AWS calls'}")
    for note in notes:
        print(note)
    print(f"Wall time: {time.perf_counter() - wall:.1f} s")
    if not args.keep_db:
        bench_database_drop(maintenance, args.database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
