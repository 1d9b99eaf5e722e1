"""Idle auto-stop: stop machines nobody is using, after warning their owner.

A workspace is idle when every signal stayed below its threshold for the
whole idle window of its policy (the template's, else the course's): average
CPU per CloudWatch period, network bytes in + out, and the activity agent's
heartbeats (Jupyter kernels, SSH terminals). The sweep works out since when
each machine has been idle, warns the owner a little before the window is
up, and stops it through the ordinary stop service with reason `idle`. A
machine that worked hard and then went quiet also gets a "your job looks
finished" notice.

Missing CloudWatch datapoints count as no evidence of activity, not as
activity: EC2 basic monitoring reports every five minutes, and a short policy
(the demo's three minutes, or a fake AWS) would otherwise never stop
anything. The stop still needs the machine to have run for the whole window
with no agent activity, and comes after a warning. A CloudWatch request that
fails is different: that account's machines are left alone until the next
sweep.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from provisioning import aws
from provisioning.broadcast import broadcast_member_workspaces
from provisioning.models import Workspace
from provisioning.states import State

log = logging.getLogger(__name__)
_ONE_SWEEP = timedelta(seconds=60)


@dataclass(frozen=True)
class IdlePolicy:
    minutes: int
    source: str  # "template" or "course"

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.minutes)

    @property
    def warning_lead(self) -> timedelta:
        """How long before the stop the owner is warned: a quarter of the window at
        most, never less than one sweep."""
        lead = min(timedelta(minutes=settings.LENS_IDLE_WARNING_MINUTES), self.window / 4)
        return min(max(lead, _ONE_SWEEP), self.window)

    @property
    def finished_after(self) -> timedelta:
        """How long a busy machine must be quiet before its job looks finished."""
        return min(timedelta(minutes=settings.LENS_IDLE_FINISHED_MINUTES), self.window / 4)


def idle_policy_resolve(*, template_minutes: int | None,
                        course_minutes: int | None) -> IdlePolicy | None:
    """The template's idle minutes if it has any, else the course's, else no auto-stop."""
    if template_minutes:
        return IdlePolicy(template_minutes, "template")
    if course_minutes:
        return IdlePolicy(course_minutes, "course")
    return None


def workspace_idle_policy(workspace: Workspace) -> IdlePolicy | None:
    return idle_policy_resolve(template_minutes=workspace.template.idle_stop_minutes,
                               course_minutes=workspace.owner.course.idle_stop_minutes)


# --- deciding ------------------------------------------------------------------


@dataclass(frozen=True)
class IdleVerdict:
    idle_since: datetime  # the end of the last activity any signal saw
    busy_before: bool  # the CPU worked hard in the window before it went quiet

    def idle_for(self, now: datetime) -> timedelta:
        return max(now - self.idle_since, timedelta(0))


def workspace_idle_verdict(*, running_since: datetime, last_activity_at: datetime | None,
                           metrics: aws.InstanceMetrics | None, period: int,
                           window: timedelta) -> IdleVerdict:
    """Since when every signal has been below its threshold.

    A datapoint covers [its timestamp, timestamp + period); one at or above
    the threshold means activity until the end of its period. The machine's
    start counts as activity, so a machine is never idle for longer than it
    has been running.
    """
    moments = [running_since]
    if last_activity_at:
        moments.append(last_activity_at)
    span = timedelta(seconds=period)
    cpu_limit = float(settings.LENS_IDLE_CPU_PERCENT)
    network_limit = settings.LENS_IDLE_NETWORK_BYTES_PER_MINUTE * period / 60
    if metrics is not None:
        moments += [at + span for at, value in metrics.cpu.items() if value >= cpu_limit]
        moments += [at + span for at, value in metrics.network.items() if value >= network_limit]
    idle_since = max(moments)
    busy_before = False
    if metrics is not None:
        before = [value for at, value in metrics.cpu.items()
                  if idle_since - window <= at < idle_since]
        busy_before = bool(before) and (
            Decimal(sum(before) / len(before)) >= settings.LENS_IDLE_BUSY_CPU_PERCENT)
    return IdleVerdict(idle_since=idle_since, busy_before=busy_before)


# --- the sweep -------------------------------------------------------------------


@dataclass
class IdleSweep:
    checked: int = 0  # running workspaces with an idle policy
    measured: int = 0  # of those, asked about in CloudWatch
    aws_calls: int = 0  # GetMetricData requests
    warned: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    cleared: list[int] = field(default_factory=list)  # warnings lifted by new activity
    failed_accounts: list[int] = field(default_factory=list)


def _candidates(account_id: int | None):
    queryset = (Workspace.objects.filter(state=State.RUNNING).exclude(instance_id="")
                .filter(Q(template__idle_stop_minutes__gt=0)
                        | Q(owner__course__idle_stop_minutes__gt=0))
                .select_related("template", "owner__course", "cloud_account")
                .order_by("pk"))
    if account_id is not None:
        queryset = queryset.filter(cloud_account_id=account_id)
    return queryset


def _warned_now(workspace: Workspace, verdict: IdleVerdict) -> bool:
    """A warning stands for the current idle stretch."""
    warned = workspace.idle_warned_at
    return (warned is not None and workspace.idle_stop_at is not None
            and warned >= verdict.idle_since and warned >= workspace.state_changed_at)


def idle_sweep(*, now: datetime | None = None, account_id: int | None = None) -> IdleSweep:
    """Warn, notify and stop idle workspaces; safe to run any number of times.

    One query for the candidates, GetMetricData in batches (500 queries a
    call) per cloud account, and writes only for the notices and stops made.
    """
    now = now or timezone.now()
    summary = IdleSweep()
    workspaces = list(_candidates(account_id))
    summary.checked = len(workspaces)
    policies = {w.pk: workspace_idle_policy(w) for w in workspaces}
    # Only machines that could be warned, notified or stopped now are measured.
    measurable = []
    for w in workspaces:
        policy = policies[w.pk]
        quiet_since = max(filter(None, [w.state_changed_at, w.last_activity_at]))
        if now - quiet_since >= min(policy.window - policy.warning_lead, policy.finished_after):
            measurable.append(w)
    summary.measured = len(measurable)
    period = settings.LENS_IDLE_METRIC_PERIOD_SECONDS
    by_account: dict[int, list[Workspace]] = defaultdict(list)
    for w in measurable:
        by_account[w.cloud_account_id].append(w)
    for group in by_account.values():
        longest = max(policies[w.pk].window for w in group)
        try:
            metrics = aws.metrics_fetch(group[0].cloud_account,
                                        instance_ids=[w.instance_id for w in group],
                                        start=now - 2 * longest - timedelta(seconds=period),
                                        end=now, period=period)
        except aws.AwsError as exc:
            log.warning("idle sweep: CloudWatch failed for account %s: %s",
                        group[0].cloud_account_id, exc)
            summary.failed_accounts.append(group[0].cloud_account_id)
            continue
        summary.aws_calls += metrics.calls
        for w in group:
            verdict = workspace_idle_verdict(
                running_since=w.state_changed_at, last_activity_at=w.last_activity_at,
                metrics=metrics.instances.get(w.instance_id), period=period,
                window=policies[w.pk].window)
            _act(workspace=w, policy=policies[w.pk], verdict=verdict, now=now, summary=summary)
    if summary.cleared:
        Workspace.objects.filter(pk__in=summary.cleared).update(idle_warned_at=None,
                                                                idle_stop_at=None)
        for owner_id in {w.owner_id for w in measurable if w.pk in summary.cleared}:
            transaction.on_commit(
                lambda owner_id=owner_id: broadcast_member_workspaces(membership_id=owner_id))
    return summary


def _act(*, workspace: Workspace, policy: IdlePolicy, verdict: IdleVerdict, now: datetime,
         summary: IdleSweep) -> None:
    from provisioning import services

    idle_for = verdict.idle_for(now)
    warned = _warned_now(workspace, verdict)
    stale = workspace.idle_warned_at is not None and not warned
    stop_at = verdict.idle_since + policy.window
    if warned:
        stop_at = max(stop_at, workspace.idle_stop_at)
        if now >= stop_at:
            with contextlib.suppress(services.TransitionError):  # someone else changed it
                services.workspace_stop(workspace=workspace, actor=None,
                                        reason=Workspace.StopReason.IDLE)
                summary.stopped.append(workspace.pk)
                _notify(workspace, *_stopped_text(workspace, verdict, policy, now))
            return
    elif idle_for >= policy.window - policy.warning_lead:
        # Never stop without warning first: a late warning moves the stop back.
        stop_at = max(stop_at, now + policy.warning_lead)
        if _notice_claim(workspace, "idle_warned_at", now, idle_stop_at=stop_at):
            summary.warned.append(workspace.pk)
            _notify(workspace, *_warning_text(workspace, verdict, policy, stop_at))
            stale = False
    if stale:  # there was activity since the warning: the card stops showing it
        summary.cleared.append(workspace.pk)
    finished = workspace.job_finished_at
    if (verdict.busy_before and idle_for >= policy.finished_after
            and not (finished and finished >= verdict.idle_since)
            and _notice_claim(workspace, "job_finished_at", now)):
        summary.finished.append(workspace.pk)
        _notify(workspace, *_finished_text(workspace, verdict, stop_at))


def _notice_claim(workspace: Workspace, name: str, now: datetime, **extra) -> bool:
    """Mark a notice sent, compare-and-swap, so two sweeps never both send it."""
    claimed = bool(Workspace.objects.filter(
        pk=workspace.pk, state=State.RUNNING, **{name: getattr(workspace, name)},
    ).update(**{name: now}, **extra))
    if claimed:
        setattr(workspace, name, now)
        for key, value in extra.items():
            setattr(workspace, key, value)
    return claimed


def _at(moment: datetime, workspace: Workspace) -> str:
    return f"{moment.astimezone(workspace.owner.course.zone):%H:%M %Z}"


def _warning_text(workspace: Workspace, verdict: IdleVerdict, policy: IdlePolicy,
                  stop_at: datetime) -> tuple[str, str]:
    course = workspace.owner.course
    subject = f"[Lens] {course.code}: {workspace.name} will stop at {_at(stop_at, workspace)}"
    body = (f"Your workspace {workspace.name} in {course.code} has been idle since "
            f"{_at(verdict.idle_since, workspace)}. Lens stops machines after "
            f"{policy.minutes} minutes without activity, so it will stop at "
            f"{_at(stop_at, workspace)} unless there is activity: run something, or use "
            "Jupyter or an SSH terminal. Your files stay on its disk; you can start it "
            "again from your dashboard.")
    return subject, body


def _stopped_text(workspace: Workspace, verdict: IdleVerdict, policy: IdlePolicy,
                  now: datetime) -> tuple[str, str]:
    course = workspace.owner.course
    subject = f"[Lens] {course.code}: {workspace.name} stopped after {policy.minutes} idle minutes"
    body = (f"Lens stopped your workspace {workspace.name} in {course.code} at "
            f"{_at(now, workspace)}: it had been idle since {_at(verdict.idle_since, workspace)}, "
            f"and machines stop after {policy.minutes} minutes without activity. Nothing is "
            "lost: your files stay on its disks. Start it again from your dashboard when you "
            "need it; a stopped machine costs only its storage.")
    return subject, body


def _finished_text(workspace: Workspace, verdict: IdleVerdict,
                   stop_at: datetime) -> tuple[str, str]:
    course = workspace.owner.course
    subject = f"[Lens] {course.code}: your job on {workspace.name} looks finished"
    body = (f"Your workspace {workspace.name} in {course.code} was busy until "
            f"{_at(verdict.idle_since, workspace)} and has been quiet since: your job looks "
            f"finished. Save what you need; Lens will stop the machine at "
            f"{_at(stop_at, workspace)} unless there is activity.")
    return subject, body


def _notify(workspace: Workspace, subject: str, body: str) -> None:
    """The card shows it live; the owner gets an email too."""
    owner_id, email = workspace.owner_id, workspace.owner.email
    transaction.on_commit(lambda: broadcast_member_workspaces(membership_id=owner_id))
    if email:
        transaction.on_commit(lambda: _email(subject, body, email))


def _email(subject: str, body: str, recipient: str) -> None:
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient])
    except Exception:  # the notice on the card stands; mail trouble is logged, not fatal
        log.exception("could not send idle notice to %s", recipient)
