"""Budget overrun: how far past a member's cap does spend go before the machine stops?

A simulated term of a class (default 50 students x 15 weeks, $24 cap each) runs
on an accelerated clock through Lens's real code path: launches and starts go
through `provisioning.services.workspace_launch` / `workspace_start` (so the
budget guard decides), Celery tasks run eagerly in-process, AWS is a moto
server started here, and the clock is moved with time_machine. Enforcement is
driven the way production drives it: each member's scheduled check
(`BudgetWatch.check_at` -> `member_budget_check_task`, delivered once per
token when the clock reaches it) plus the one-minute `billing_sweep_task`.

Afterwards, from the ledger and the WorkspaceEvent history, it records per
student when spend reached the cap and when the machine stopped, and compares
Lens with two baseline policies computed analytically on the same session
trace: a 5-minute sweep, and AWS Budgets with an 8-hour lag.

Run it in the embedded dev stack, with ports and data of its own; it creates
and later drops a throwaway database `lens_bench` (never the demo's `lens`):

    cd /work/main && export LENS_VAR_DIR=/work/main/var/bench LENS_PG_PORT=55443 \
        LENS_REDIS_PORT=56403 LENS_MOTO_PORT=55103 && \
    .venv/bin/python -m lens.devstack run -- env DEBUG=true \
        CHANNEL_LAYER_PREFIX=lens-bench CELERY_QUEUE=lens-bench \
        .venv/bin/python bench/budget_overrun.py

Options: --students N (50), --weeks N (15), --seed N (7), --cap USD (24),
--sweep-every MIN (0), --database NAME (lens_bench), --keep-db.

Time and events. The session trace (seeded) is fixed before the run. The
clock stands still (time_machine, tick=False) and jumps to the next of: a
session start or end, the earliest undelivered `BudgetWatch.check_at`, or the
next sweep tick (whole minutes). Every task a step enqueues runs at once, at
that simulated instant (moto answers at once, so a machine is running, or
stopped, in the same instant it was asked to be). Compute is billed from the
RUNNING event to the STOPPING event, as Lens meters it.

The sweep. Beat runs it every minute: 150,000 times a term, which the real
sweep cannot do in minutes here. It can only change the outcome by stopping
a running member whose money is running out, so it runs at every minute tick
from three minutes before that moment (computed here independently, from the
WorkspaceEvent history) until their machines are stopped, and at term end.
(The guard meters the member itself before it decides, so it does not depend
on the sweep.) `--sweep-every N` adds a full sweep every N simulated minutes;
`--sweep-every 1` is beat's schedule (slow: use it with a small class and cap,
e.g. `--students 12 --weeks 1 --cap 1.2`, to check that the shortcut changes
nothing).

Disks. Lens sets aside the cost of a member's disks until the end of term
(the course's `ends_at`), so machines may burn the cap minus that. For Lens,
"exhaustion" is therefore the moment compute spend plus the disks to term end
reaches the cap; the baselines set nothing aside, and theirs is the moment
spend reaches it. Both are judged by spend at term end as well.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import logging
import math
import os
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIM_START = datetime(2026, 1, 12, tzinfo=UTC)  # a Monday, midnight UTC
DEFAULT_CAP = "24.00"
GOAL_OVERRUN = 0.01  # dollars
GOAL_P99_DELAY = 5.0  # seconds
SWEEP_5_MIN = 300.0
AWS_BUDGETS_LAG = 8 * 3600.0
DANGER_MARGIN = 180.0  # seconds of burn before the money runs out: sweep every minute from here
MINIMUM_RUN = 60.0  # AWS's 60-second minimum per start (Linux on-demand)

# The class: templates, and how students behave.
TEMPLATES = {  # slug: (instance type, name)
    "cpu-medium": ("t3.medium", "CPU workspace (t3.medium)"),
    "cpu-large": ("t3.large", "CPU workspace (t3.large)"),
    "gpu": ("g4dn.xlarge", "GPU workspace (g4dn.xlarge)"),
}
AL2023 = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
SHARE_LARGE = 0.4  # students whose own machine is a t3.large rather than a t3.medium
SESSIONS_PER_WEEK = (1, 4)
SESSION_HOURS = (0.5, 6.0)
DAY_HOURS = (8.0, 22.0)  # sessions start between 08:00 and 22:00
FORGET_CHANCE = 0.05  # a session whose machine is left running...
FORGET_HOURS = (24.0, 96.0)  # ...for one to four days
GPU_SHARE = 0.2  # students who also run a few GPU sessions
GPU_SESSIONS = (1, 3)
GPU_HOURS = (1.0, 4.0)
GAP = timedelta(minutes=10)  # least time between two sessions on the same machine


# --- the throwaway database, before Django starts --------------------------------------


def bench_database_prepare(name: str) -> str:
    """Create an empty database `name` next to the stack's own; point Lens at it."""
    import psycopg

    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("DATABASE_URL is not set: run this through `python -m lens.devstack run`"
                         " (see the docstring).")
    parts = urlsplit(url)
    if name in {parts.path.lstrip("/"), "postgres", "template0", "template1"}:
        raise SystemExit(f"Refusing to use {name!r}: the bench drops its database.")
    maintenance = urlunsplit(parts._replace(path="/postgres", scheme="postgresql"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        # A throwaway database: commits need not wait for the disk.
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    return maintenance


def bench_database_drop(maintenance: str, name: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the session trace ------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    student: int
    kind: str  # "main" (the student's own CPU machine) or "gpu"
    slug: str
    start: datetime
    end: datetime
    forgotten: bool


def trace_make(*, students: int, weeks: int, seed: int) -> tuple[list[Session], dict[int, str]]:
    """Every student's intended sessions, from a seeded RNG (the same for every policy)."""
    rng = random.Random(seed)
    term_end = SIM_START + timedelta(weeks=weeks)
    sessions: list[Session] = []
    main_slug: dict[int, str] = {}

    def at(day: float, hour: float) -> datetime:
        return SIM_START + timedelta(seconds=round(day * 86400 + hour * 3600))

    for student in range(students):
        slug = "cpu-large" if rng.random() < SHARE_LARGE else "cpu-medium"
        main_slug[student] = slug
        wanted: list[tuple[datetime, datetime, bool]] = []
        for week in range(weeks):
            for _ in range(rng.randint(*SESSIONS_PER_WEEK)):
                start = at(week * 7 + rng.randrange(7), rng.uniform(*DAY_HOURS))
                forgotten = rng.random() < FORGET_CHANCE
                hours = rng.uniform(*(FORGET_HOURS if forgotten else SESSION_HOURS))
                wanted.append((start, start + timedelta(seconds=round(hours * 3600)), forgotten))
        gpu: list[tuple[datetime, datetime, bool]] = []
        if rng.random() < GPU_SHARE:
            for _ in range(rng.randint(*GPU_SESSIONS)):
                start = at(rng.uniform(0, weeks * 7 - 1) // 1, rng.uniform(*DAY_HOURS))
                hours = rng.uniform(*GPU_HOURS)
                gpu.append((start, start + timedelta(seconds=round(hours * 3600)), False))
        for kind, kind_slug, runs in (("main", slug, wanted), ("gpu", "gpu", gpu)):
            last_end = None
            for start, end, forgotten in sorted(runs):
                if start >= term_end or (last_end is not None and start < last_end + GAP):
                    continue  # the machine is still in use: that session is not a new one
                end = min(end, term_end)  # term end stops everything
                sessions.append(Session(student, kind, kind_slug, start, end, forgotten))
                last_end = end
    sessions.sort(key=lambda s: (s.start, s.student, s.kind))
    return sessions, main_slug


# --- spend as a function of time ---------------------------------------------------------


class Curve:
    """Cumulative spend: a sum of lines, each spread evenly over its interval.

    Times are seconds since SIM_START. A line of zero length is a step.
    """

    def __init__(self, lines: list[tuple[float, float, float]]):
        slope_change: dict[float, float] = defaultdict(float)
        step: dict[float, float] = defaultdict(float)
        for start, end, amount in lines:
            if end <= start:
                step[start] += amount
            else:
                rate = amount / (end - start)
                slope_change[start] += rate
                slope_change[end] -= rate
        self.points = sorted(set(slope_change) | set(step))
        self.values: list[float] = []  # spend at each point, steps included
        self.slopes: list[float] = []  # slope just after each point
        value, slope, previous = 0.0, 0.0, None
        for point in self.points:
            if previous is not None:
                value += slope * (point - previous)
            value += step.get(point, 0.0)
            slope += slope_change.get(point, 0.0)
            self.values.append(value)
            self.slopes.append(slope)
            previous = point

    def at(self, t: float) -> float:
        i = bisect.bisect_right(self.points, t) - 1
        if i < 0:
            return 0.0
        return self.values[i] + self.slopes[i] * (t - self.points[i])

    def first_reaching(self, level: float) -> float | None:
        for i, point in enumerate(self.points):
            before = self.values[i - 1] + self.slopes[i - 1] * (point - self.points[i - 1]) \
                if i else 0.0
            if before >= level:  # reached on the way to this point
                slope = self.slopes[i - 1]
                return point - (before - level) / slope if slope > 0 else point
            if self.values[i] >= level:  # a step at this point
                return point
        return None


def billed_run(start: float, end: float, rate_per_hour: float) -> tuple[float, float, float]:
    """A compute run as a ledger line: per second, with the 60-second minimum."""
    end = max(end, start + MINIMUM_RUN)
    return start, end, rate_per_hour * (end - start) / 3600


# --- the simulation ---------------------------------------------------------------------


@dataclass
class WsModel:
    """A workspace as this script sees it from WorkspaceEvent rows (independent of metering)."""

    student: int
    compute: float  # USD per hour
    storage: float
    created: float | None = None  # first `pending`: volumes exist from here
    runs: list[list[float | None]] = field(default_factory=list)  # [start, end or None]

    @property
    def running(self) -> bool:
        return bool(self.runs) and self.runs[-1][1] is None

    def spend(self, t: float) -> float:
        total = 0.0
        for start, end in self.runs:
            if start <= t:
                total += billed_run(start, t if end is None else min(end, t), self.compute)[2]
        if self.created is not None and self.created <= t:
            total += self.storage * (t - self.created) / 3600
        return total

    def committed(self, t: float, term_end: float) -> float:
        """Spend at `t` plus the disks from `t` to the end of term (what Lens sets aside)."""
        total = self.spend(t)
        if self.created is not None and self.created <= t:
            total += self.storage * (term_end - t) / 3600
        return total

    def committed_lines(self, term_end: float) -> list[tuple[float, float, float]]:
        """Compute runs as billed, and the disks to term end as a step when created."""
        lines = [billed_run(start, term_end if end is None else end, self.compute)
                 for start, end in self.runs]
        if self.created is not None:
            lines.append((self.created, self.created,
                          self.storage * (term_end - self.created) / 3600))
        return lines


def seconds(at: datetime) -> float:
    return (at - SIM_START).total_seconds()


def moment(t: float) -> datetime:
    return SIM_START + timedelta(seconds=t)


def ceil_minute(at: datetime) -> datetime:
    return SIM_START + timedelta(minutes=math.ceil(seconds(at) / 60 - 1e-9))


class Simulation:
    def __init__(self, *, args, clock, sessions, memberships, main_slug):
        from provisioning.models import Workspace

        self.args, self.clock, self.sessions = args, clock, sessions
        self.memberships = memberships  # student index -> Membership
        self.student_of = {m.pk: i for i, m in memberships.items()}
        self.main_slug = main_slug
        self.term_end = SIM_START + timedelta(weeks=args.weeks)
        self.end = seconds(self.term_end)
        self.workspace_ids: dict[tuple[int, str], int] = {}
        self.models: dict[int, WsModel] = {}
        self.last_event_pk = 0
        self.watches: dict[int, tuple[datetime, str]] = {}
        self.delivered: set[str] = set()
        self.last_sweep = SIM_START - timedelta(minutes=1)
        self.last_routine = SIM_START - timedelta(minutes=args.sweep_every)
        self.counts: Counter[str] = Counter()
        self.refusals: list[tuple[int, datetime, str]] = []
        self.sweep_danger: dict[int, float] = {}
        self.Workspace = Workspace
        self.week, self.wall_start, self.steps = 0, time.perf_counter(), 0
        self.sweep_seconds = 0.0

    # -- the world's state, read back after every step

    def observe(self) -> None:
        from provisioning.models import BudgetWatch, WorkspaceEvent
        from provisioning.states import State

        billed = {State.RUNNING, State.HIBERNATING}
        new = list(WorkspaceEvent.objects.filter(pk__gt=self.last_event_pk).order_by("pk")
                   .values_list("pk", "workspace_id", "to_state", "at"))
        unknown = {w for _, w, _, _ in new if w not in self.models}
        for pk, owner_id, compute, storage in self.Workspace.objects.filter(pk__in=unknown) \
                .values_list("pk", "owner_id", "compute_usd_per_hour", "storage_usd_per_hour"):
            self.models[pk] = WsModel(self.student_of[owner_id], float(compute), float(storage))
        for pk, workspace_id, to_state, at in new:
            model, t = self.models[workspace_id], seconds(at)
            if to_state == State.PENDING and model.created is None:
                model.created = t
            if to_state in billed and not model.running:
                model.runs.append([t, None])
            elif to_state not in billed and model.running:
                model.runs[-1][1] = t
            self.last_event_pk = pk
        self.watches = {
            membership_id: (check_at, str(token))
            for membership_id, token, check_at in BudgetWatch.objects
            .filter(check_at__isnull=False).values_list("membership_id", "token", "check_at")}
        self._danger_update()

    def _danger_update(self) -> None:
        """When each running student's money is three minutes from running out."""
        now = seconds(self.clock_now())
        by_student: dict[int, list[WsModel]] = defaultdict(list)
        for model in self.models.values():
            by_student[model.student].append(model)
        self.sweep_danger = {}
        for student, models in by_student.items():
            compute = sum(m.compute for m in models if m.running)
            if not compute:
                continue
            left = float(self.args.cap) - sum(m.committed(now, self.end) for m in models)
            self.sweep_danger[student] = now + (left / compute) * 3600 - DANGER_MARGIN

    def clock_now(self) -> datetime:
        from django.utils import timezone

        return timezone.now()

    # -- what happens next

    def next_check(self) -> tuple[datetime, int, str] | None:
        due = [(at, mid, token) for mid, (at, token) in self.watches.items()
               if token not in self.delivered]
        return min(due) if due else None

    def next_sweep(self) -> datetime:
        candidates = [self.term_end + timedelta(days=1)]  # no routine sweeps with 0
        if self.args.sweep_every:
            routine = self.last_routine + timedelta(minutes=self.args.sweep_every)
            candidates.append(max(routine, self.last_sweep + timedelta(minutes=1)))
        if self.sweep_danger:
            soonest = moment(min(self.sweep_danger.values()))
            candidates.append(max(ceil_minute(soonest), self.last_sweep + timedelta(minutes=1),
                                  ceil_minute(self.clock_now())))
        return min(candidates)

    def run(self) -> None:
        queue: list[tuple[datetime, int, str, Session]] = []
        for n, session in enumerate(self.sessions):
            heapq.heappush(queue, (session.start, n, "start", session))
        serial = len(self.sessions)
        self.observe()
        while True:
            check = self.next_check()
            sweep_at = self.next_sweep()
            options = [sweep_at]
            if check:
                options.append(check[0])
            if queue:
                options.append(queue[0][0])
            at = min(options)
            if at > self.term_end:
                break
            self.clock.move_to(at)
            self.steps += 1
            self.progress(at)
            if check and check[0] == at:
                self.check_deliver(check[1], check[2])
            elif queue and queue[0][0] == at:
                _, _, kind, session = heapq.heappop(queue)
                if kind == "start":
                    if self.session_start(session):
                        serial += 1
                        heapq.heappush(queue, (session.end, serial, "end", session))
                else:
                    self.session_end(session)
            else:
                self.sweep(at)
            self.observe()
        self.clock.move_to(self.term_end)  # meter everything to the end of term
        before = self.sweep_seconds
        self.sweep(self.term_end, routine=True)
        self.last_sweep_seconds = self.sweep_seconds - before
        self.observe()

    def progress(self, at: datetime) -> None:
        week = min((at - SIM_START).days // 7 + 1, self.args.weeks)
        if week != self.week:
            self.week = week
            print(f"[bench] week {week:2d}/{self.args.weeks}, wall "
                  f"{time.perf_counter() - self.wall_start:6.1f} s, events so far {self.steps:,}",
                  file=sys.stderr, flush=True)

    # -- the steps

    def session_start(self, session: Session) -> bool:
        from provisioning import services

        membership = self.memberships[session.student]
        key = (session.student, session.kind)
        self.counts["session starts"] += 1
        try:
            if key not in self.workspace_ids:
                workspace = services.workspace_launch(
                    membership=membership, template_slug=session.slug, name=session.kind,
                    actor=membership.user)
                self.workspace_ids[key] = workspace.pk
                self.counts["launches"] += 1
            else:
                workspace = self.Workspace.objects.select_related("owner").get(
                    pk=self.workspace_ids[key])
                if workspace.state != "stopped":
                    self.counts[f"start skipped ({workspace.state})"] += 1
                    return False
                services.workspace_start(workspace=workspace, actor=membership.user)
                self.counts["starts"] += 1
        except (services.LaunchRefused, services.StartRefused) as refusal:
            self.counts["refused by the guard"] += 1
            self.refusals.append((session.student, session.start, str(refusal)))
            return False
        state = self.Workspace.objects.values_list("state", flat=True).get(pk=workspace.pk)
        if state != "running":
            self.counts[f"launch ended {state}"] += 1
            return False
        return True

    def session_end(self, session: Session) -> None:
        from provisioning import services

        self.counts["session ends"] += 1
        workspace = self.Workspace.objects.select_related("owner").get(
            pk=self.workspace_ids[(session.student, session.kind)])
        if workspace.state != "running":
            return  # the budget stopped it first
        try:
            services.workspace_stop(workspace=workspace, actor=workspace.owner.user)
        except services.TransitionError:
            self.counts["user stop lost a race"] += 1

    def check_deliver(self, membership_id: int, token: str) -> None:
        from provisioning import tasks

        self.delivered.add(token)
        self.counts["scheduled checks"] += 1
        tasks.member_budget_check_task.delay(membership_id, token)

    def sweep(self, at: datetime, routine: bool | None = None) -> None:
        from provisioning import tasks

        if routine is None:
            routine = bool(self.args.sweep_every) and \
                at >= self.last_routine + timedelta(minutes=self.args.sweep_every)
        if routine:
            self.last_routine = at
        self.last_sweep = at
        self.counts["sweeps"] += 1
        started = time.perf_counter()
        tasks.billing_sweep_task.delay()
        self.sweep_seconds += time.perf_counter() - started


# --- what happened, and what the baselines would have done -------------------------------


@dataclass
class Outcome:
    student: int
    hit: bool
    exhausted: float | None = None  # when spend reached the cap (s since start)
    stopped: float | None = None  # when the machine(s) stopped, if one had to stop
    overrun: float = 0.0  # spend when they stopped, minus the cap (>= 0)
    final_overrun: float = 0.0  # spend at term end, minus the cap (>= 0)
    note: str = ""

    @property
    def delay(self) -> float | None:
        if self.stopped is None or self.exhausted is None:
            return None
        return self.stopped - self.exhausted


def lens_outcomes(sim: Simulation) -> tuple[list[Outcome], dict[int, float]]:
    """Per student, from the ledger's usage lines and the budget-stop events."""
    from billing.models import LedgerEntry
    from provisioning.models import WorkspaceEvent

    cap, end = float(sim.args.cap), seconds(sim.term_end)
    lines: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
    for membership_id, start, stop, amount in LedgerEntry.objects.filter(
            kind__in=[LedgerEntry.Kind.USAGE, LedgerEntry.Kind.ADJUSTMENT]).values_list(
            "membership_id", "interval_start", "interval_end", "amount"):
        lines[sim.student_of[membership_id]].append(
            (seconds(start), seconds(stop), float(amount)))
    budget_stops: dict[int, list[float]] = defaultdict(list)
    for owner_id, at in WorkspaceEvent.objects.filter(
            to_state="stopping", reason__contains="budget").values_list(
            "workspace__owner_id", "at"):
        budget_stops[sim.student_of[owner_id]].append(seconds(at))
    by_student: dict[int, list[WsModel]] = defaultdict(list)
    for model in sim.models.values():
        by_student[model.student].append(model)

    outcomes, model_gap = [], {}
    for student in sim.memberships:
        models = by_student[student]
        curve = Curve(lines[student])
        final = curve.at(end)
        model_gap[student] = final - sum(m.spend(end) for m in models)
        # What Lens enforces: compute spend plus the disks set aside to term end.
        enforced = Curve([line for m in models for line in m.committed_lines(end)])
        runs = [(start, end if stop is None else stop) for m in models for start, stop in m.runs]
        outcome = episode(student, enforced, runs, cap=cap, final=final)
        stops = sorted(budget_stops[student])
        if stops and (outcome.exhausted is None or stops[0] < outcome.exhausted):
            # Stopped a little before the money ran out: when it would have run out at the
            # compute rate it was burning (the disks are already counted to term end).
            first = stops[0]
            rate = sum(m.compute for m in models
                       if any(a < first and (b is None or b >= first) for a, b in m.runs))
            if outcome.stopped is None:  # nothing ran past the cap
                outcome.exhausted = first + (cap - enforced.at(first)) / rate * 3600
                outcome.stopped = first
            else:
                outcome.note = "budget stop came early, yet a machine ran past the cap later"
            outcome.hit = True
        elif outcome.stopped is not None and not stops:
            outcome.note = "NO budget stop: it ran past the cap until its owner stopped it"
        elif outcome.hit and outcome.stopped is None:
            outcome.note = "crossed on storage alone, nothing running"
        if len(stops) > 1:
            outcome.note = (outcome.note + "; " if outcome.note else "") + \
                f"{len(stops)} budget-stop events"
        outcomes.append(outcome)
    return outcomes, model_gap


def episode(student: int, curve: Curve, runs: list[tuple[float, float]], *, cap: float,
            final: float) -> Outcome:
    """What spend past the cap looked like, the same way for every policy.

    Exhaustion is when spend first reaches the cap. If compute was billed after
    that (a machine still running, or one started later), `stopped` is when the
    last of it ended, the delay is that minus exhaustion, and the overrun is the
    spend then, minus the cap.
    """
    crossing = curve.first_reaching(cap)
    outcome = Outcome(student, hit=crossing is not None, exhausted=crossing,
                      final_overrun=max(0.0, final - cap))
    if crossing is None:
        return outcome
    after = [billed_run(start, stop, 0.0)[1] for start, stop in runs]
    after = [stop for stop in after if stop > crossing]
    if after:
        outcome.stopped = max(after)
        outcome.overrun = max(0.0, curve.at(outcome.stopped) - cap)
    return outcome


def baseline_outcomes(*, sessions: list[Session], students: list[int], rates: dict[str, tuple],
                      cap: float, term_end: float, notice) -> list[Outcome]:
    """The same trace under a policy that notices a crossing at `notice(t)` and stops then.

    No launch guard: sessions run as wanted until the policy stops the machines,
    and no session starts after that.
    """
    by_student: dict[int, list[Session]] = defaultdict(list)
    for session in sessions:
        by_student[session.student].append(session)

    def lines(runs: list[tuple[Session, float, float]]) -> list[tuple[float, float, float]]:
        out, created = [], {}
        for session, start, stop in runs:
            compute, _ = rates[session.slug]
            out.append(billed_run(start, stop, compute))
            created.setdefault(session.kind, (start, rates[session.slug][1]))
        for start, storage in created.values():
            out.append((start, term_end, storage * (term_end - start) / 3600))
        return out

    outcomes = []
    for student in students:
        wanted = [(s, seconds(s.start), seconds(s.end)) for s in by_student[student]]
        crossing = Curve(lines(wanted)).first_reaching(cap)
        if crossing is not None:  # from the notice on, nothing runs
            noticed = notice(crossing)
            wanted = [(s, start, min(stop, noticed)) for s, start, stop in wanted
                      if start < noticed]
        curve = Curve(lines(wanted))
        outcomes.append(episode(student, curve, [(a, b) for _, a, b in wanted], cap=cap,
                                final=curve.at(term_end)))
    return outcomes


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Row:
    policy: str
    hit: int
    stops: int
    max_overrun: float
    total_overrun: float
    p50: float | None
    p99: float | None
    final_max: float
    final_total: float


def summarize(policy: str, outcomes: list[Outcome]) -> Row:
    delays = [o.delay for o in outcomes if o.delay is not None]
    return Row(policy, hit=sum(o.hit for o in outcomes), stops=len(delays),
               max_overrun=max((o.overrun for o in outcomes), default=0.0),
               total_overrun=sum(o.overrun for o in outcomes),
               p50=percentile(delays, 0.5), p99=percentile(delays, 0.99),
               final_max=max((o.final_overrun for o in outcomes), default=0.0),
               final_total=sum(o.final_overrun for o in outcomes))


def table_print(rows: list[Row]) -> None:
    header = ["policy", "students who hit the cap", "stops", "max overrun $",
              "total overrun $", "p50 delay s", "p99 delay s", "term-end max $",
              "term-end total $"]

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    body = [[r.policy, str(r.hit), str(r.stops), number(r.max_overrun, 4),
             number(r.total_overrun, 4), number(r.p50, 1), number(r.p99, 1),
             number(r.final_max, 4), number(r.final_total, 2)] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    for n, line in enumerate([header, *body]):
        cells = [cell.ljust(w) if i == 0 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(line, widths, strict=True))]
        print("| " + " | ".join(cells) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def when(t: float | None) -> str:
    if t is None:
        return "-"
    at = moment(t)
    return f"w{(at - SIM_START).days // 7 + 1:02d} {at:%a %H:%M:%S}"


# --- setup and main -----------------------------------------------------------------------


def moto_start():
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def aws_calls_count(counter: Counter) -> None:
    """Count AWS requests by operation (wraps the adapter's client factory; no behaviour change)."""
    from provisioning import aws

    original = aws._client
    seen: set[int] = set()

    def counted(account, service):
        client = original(account, service)
        if id(client) not in seen:
            seen.add(id(client))
            client.meta.events.register(
                "before-call", lambda model, **_: counter.update([model.name]))
        return client

    aws._client = counted


def course_make(*, students: int, cap: Decimal, term_end: datetime):
    from django.contrib.auth import get_user_model

    from billing.services import prices_load_bundled
    from courses.models import Course, Membership
    from provisioning.models import ApprovedTemplate, WorkspaceTemplate

    prices_load_bundled()
    course = Course.objects.create(
        code="BENCH101", title="Budget overrun bench", status=Course.Status.ACTIVE,
        time_zone="UTC", region="us-east-1", default_member_budget=cap,
        max_concurrent_workspaces=2, starts_at=SIM_START, ends_at=term_end)
    for slug, (instance_type, name) in TEMPLATES.items():
        template = WorkspaceTemplate.objects.create(slug=slug, name=name, image=AL2023,
                                                    instance_type=instance_type)
        ApprovedTemplate.objects.create(course=course, template=template)
    User = get_user_model()
    memberships = {}
    for i in range(students):
        user = User.objects.create(username=f"student{i:03d}",
                                   email=f"student{i:03d}@bench.example.edu")
        memberships[i] = Membership.objects.create(
            course=course, user=user, email=user.email, role=Membership.Role.STUDENT,
            status=Membership.Status.ACTIVE, budget_cap=cap)
    return course, memberships


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--weeks", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cap", type=Decimal, default=Decimal(DEFAULT_CAP),
                        help="each student's cap in USD (a small one makes short runs hit it)")
    parser.add_argument("--sweep-every", type=int, default=0, metavar="MINUTES",
                        help="also sweep every MINUTES simulated minutes (1 = as beat; "
                             "0 = only where a sweep can change anything)")
    parser.add_argument("--database", default="lens_bench",
                        help="the throwaway database to create (and drop) for the run")
    parser.add_argument("--keep-db", action="store_true", help="leave the database behind")
    args = parser.parse_args(argv)
    wall_start = time.perf_counter()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lens.settings")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "testing"  # only ever the fake AWS started below
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    maintenance = bench_database_prepare(args.database)

    import django

    django.setup()
    import time_machine
    from django.conf import settings
    from django.core.management import call_command

    from billing.models import BudgetAlert, LedgerEntry
    from lens.celery import app as celery_app
    from provisioning import aws
    from provisioning.models import CloudAccount, WorkspaceEvent
    from provisioning.services import storage_usd_per_hour

    settings.DEBUG = False  # no query log kept in memory
    # A term compressed into minutes would meet EC2's per-second limits in wall-clock time.
    settings.LENS_EC2_RATE_LIMITS = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # alerts: counted
    for noisy in ("provisioning", "celery", "werkzeug"):  # one line per task or request
        logging.getLogger(noisy).setLevel(logging.WARNING)
    call_command("migrate", verbosity=0, interactive=False)
    server, endpoint = moto_start()
    try:
        settings.AWS_ENDPOINT_URL, settings.AWS_DEFAULT_REGION = endpoint, "us-east-1"
        aws.clients_reset()
        aws_calls: Counter[str] = Counter()
        aws_calls_count(aws_calls)
        celery_app.conf.task_always_eager = True
        sessions, main_slug = trace_make(students=args.students, weeks=args.weeks,
                                         seed=args.seed)
        setup_done = time.perf_counter()
        with time_machine.travel(SIM_START, tick=False) as clock:
            CloudAccount.objects.create(name="bench", region="us-east-1", endpoint_url=endpoint,
                                        is_default=True)
            course, memberships = course_make(students=args.students, cap=args.cap,
                                              term_end=SIM_START + timedelta(weeks=args.weeks))
            sim = Simulation(args=args, clock=clock, sessions=sessions,
                             memberships=memberships, main_slug=main_slug)
            sim.run()
            sim_done = time.perf_counter()
            outcomes, model_gap = lens_outcomes(sim)
            rates = {}
            for slug, (instance_type, _) in TEMPLATES.items():
                from billing.services import price_get
                from provisioning.models import WorkspaceTemplate

                template = WorkspaceTemplate.objects.get(slug=slug)
                rates[slug] = (
                    float(price_get(region="us-east-1", instance_type=instance_type)
                          .usd_per_hour),
                    float(storage_usd_per_hour(
                        region="us-east-1",
                        gib=template.root_volume_gib + template.home_volume_gib)))
            transitions = WorkspaceEvent.objects.count()
            alerts = Counter(BudgetAlert.objects.filter(membership__isnull=False)
                             .values_list("threshold", flat=True))
            ledger_lines = LedgerEntry.objects.count()
    finally:
        server.stop()

    students = list(range(args.students))
    end = seconds(sim.term_end)
    sweep_5 = baseline_outcomes(
        sessions=sessions, students=students, rates=rates, cap=float(args.cap),
        term_end=end,
        notice=lambda t: math.ceil(t / SWEEP_5_MIN - 1e-9) * SWEEP_5_MIN)
    aws_budgets = baseline_outcomes(sessions=sessions, students=students, rates=rates,
                                    cap=float(args.cap), term_end=end,
                                    notice=lambda t: t + AWS_BUDGETS_LAG)
    rows = [summarize("Lens (scheduled check + 1-min sweep)", outcomes),
            summarize("5-minute sweep", sweep_5),
            summarize("AWS Budgets, 8-hour lag", aws_budgets)]

    print()
    print(f"Budget overrun: {args.students} students x {args.weeks} weeks, cap ${args.cap} each, "
          f"seed {args.seed}; t3.medium ${rates['cpu-medium'][0]}/h, t3.large "
          f"${rates['cpu-large'][0]}/h, g4dn.xlarge ${rates['gpu'][0]}/h, storage "
          f"${rates['cpu-medium'][1]}/h per 30 GiB workspace")
    forgotten = sum(s.forgotten for s in sessions)
    print(f"Trace: {len(sessions)} sessions ({forgotten} forgotten machines, "
          f"{sum(s.kind == 'gpu' for s in sessions)} GPU sessions)")
    print()
    table_print(rows)
    print()
    print("overrun = spend when the machines stopped - cap (>= 0; for Lens, spend plus the "
          "disks set aside to term end); delay = stop time - exhaustion time (negative: stopped "
          "before the money ran out); stops = students with a delay (a machine billed at or "
          "after exhaustion, or stopped just before it; those who crossed on disk storage alone, "
          "with nothing running, have none); term-end = spend at the end of term - cap, which "
          "adds the storage billed after the stop.")
    lens = rows[0]
    met = (lens.max_overrun <= GOAL_OVERRUN
           and (lens.p99 is None or lens.p99 <= GOAL_P99_DELAY))
    print(f"Goal for Lens (max overrun <= ${GOAL_OVERRUN:.2f}, p99 delay <= "
          f"{GOAL_P99_DELAY:.0f} s): {'MET' if met else 'NOT MET'} "
          f"(max ${lens.max_overrun:.4f}, p99 "
          f"{'-' if lens.p99 is None else f'{lens.p99:.1f}'} s)")
    promise = lens.final_max <= GOAL_OVERRUN
    print(f"Spend at term end within ${GOAL_OVERRUN:.2f} of the cap for everyone: "
          f"{'yes' if promise else 'NO'} (max ${lens.final_max:.4f} over)")

    print()
    print("Lens, students who hit the cap (times: week, day, UTC):")
    print("  student  machine     exhausted         stopped           delay s  "
          "at stop $   term end $  note")
    for o in outcomes:
        if not o.hit:
            continue
        delay = "-" if o.delay is None else f"{o.delay:8.1f}"
        print(f"  {o.student:7d}  {main_slug[o.student]:10s}  {when(o.exhausted):16s}  "
              f"{when(o.stopped):16s}  {delay:>8s}  {o.overrun:9.6f}  {o.final_overrun:10.6f}"
              f"  {o.note}")
    refused_students = len({s for s, _, _ in sim.refusals})
    print()
    wall = time.perf_counter() - wall_start
    events = sim.steps + 1  # and the last sweep at term end
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(sim.counts.items()))
    print(f"Simulated events: {events:,} ({kinds})")
    reasons = Counter(text.split(":")[0] for _, _, text in sim.refusals)
    print(f"Refusals by the guard: {len(sim.refusals)} for {refused_students} students ("
          + ", ".join(f"{reason!r} x {n}" for reason, n in reasons.most_common()) + ")")
    calls = ", ".join(f"{k} {v}" for k, v in aws_calls.most_common())
    print(f"State transitions: {transitions:,}; ledger lines: {ledger_lines:,}; AWS calls: "
          f"{sum(aws_calls.values()):,} ({calls})")
    print("Budget alerts recorded: " + (", ".join(f"{t}% x {n}" for t, n in sorted(alerts.items()))
                                        or "none"))
    print(f"Ledger vs this script's own metering of the events, at term end: max |diff| "
          f"${max(abs(v) for v in model_gap.values()):.6f}")
    print(f"Wall time: {wall:.1f} s (setup {setup_done - wall_start:.1f} s, simulation "
          f"{sim_done - setup_done:.1f} s, of which {sim.counts['sweeps']:,} sweeps "
          f"{sim.sweep_seconds:.1f} s; the last one, at term end, {sim.last_sweep_seconds:.2f} s)")
    if not args.keep_db:
        bench_database_drop(maintenance, args.database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
