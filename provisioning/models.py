"""Machines: cloud accounts, workspace templates, workspaces and their history."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from courses.models import Course, Membership
from provisioning.states import ACTIVE_STATES, LAUNCH_STEPS, State


class CloudAccount(models.Model):
    """An AWS account (or a local moto server) Lens launches machines in.

    Credentials are never stored here: they come from the process's
    environment or an assumed role (`role_arn`).
    """

    name = models.CharField(max_length=100, unique=True)
    region = models.CharField(max_length=32, default="us-east-1")
    endpoint_url = models.CharField(
        max_length=200, blank=True, help_text="Empty for real AWS; a moto server's URL in dev."
    )
    role_arn = models.CharField(max_length=200, blank=True)
    vpc_id = models.CharField(max_length=40, blank=True)
    subnet_id = models.CharField(max_length=40, blank=True)
    security_group_id = models.CharField(max_length=40, blank=True)
    # Set when Lens made the network itself (all three ids blank at the first launch);
    # then Lens may also open a new template's ports in its security group.
    network_managed = models.BooleanField(default=False, editable=False)
    network_open_ports = models.CharField(max_length=200, blank=True, editable=False,
                                          help_text="Ports Lens opened in its security group.")
    is_default = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True),
                name="one_default_cloud_account",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.region})"


class WorkspaceTemplate(models.Model):
    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    instance_type = models.CharField(max_length=32)
    image = models.CharField(
        max_length=200,
        help_text="An AMI id (ami-…) or an SSM parameter name (/aws/service/…).",
    )
    root_volume_gib = models.PositiveIntegerField(default=20)
    home_volume_gib = models.PositiveIntegerField(default=10)
    spot_allowed = models.BooleanField(default=False)
    hibernation = models.BooleanField(default=False)
    bootstrap = models.TextField(blank=True, help_text="User data run at first boot.")
    ports = models.CharField(max_length=100, default="22,8888")
    login_user = models.CharField(max_length=32, default="ubuntu",
                                  help_text="The image's SSH user (ubuntu, ec2-user, …).")
    idle_stop_minutes = models.PositiveIntegerField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.slug} ({self.instance_type})"

    @property
    def port_list(self) -> list[int]:
        return sorted({int(p) for p in self.ports.replace(" ", "").split(",") if p.isdigit()})


class ApprovedTemplate(models.Model):
    """A template a course allows its members to launch.

    Lives in provisioning, not courses, because it points at a
    WorkspaceTemplate and courses must not depend on provisioning.
    """

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="approved_templates")
    template = models.ForeignKey(WorkspaceTemplate, on_delete=models.PROTECT,
                                 related_name="approvals")
    requires_approval = models.BooleanField(default=False)
    note = models.CharField(max_length=200, blank=True)
    capacity = models.PositiveIntegerField(null=True, blank=True,
                                           help_text="Slots; empty = no limit.")

    class Meta:
        ordering = ["course", "template__slug"]
        constraints = [
            models.UniqueConstraint(fields=["course", "template"], name="approved_template_unique")
        ]

    def __str__(self) -> str:
        return f"{self.template.slug} in {self.course.code}"


class WorkspaceQuerySet(models.QuerySet):
    def visible_on_dashboard(self) -> WorkspaceQuerySet:
        return self.exclude(state=State.ARCHIVED)

    def active(self) -> WorkspaceQuerySet:
        return self.filter(state__in=ACTIVE_STATES)


class Workspace(models.Model):
    class StopReason(models.TextChoices):
        USER = "user", "by its owner"
        IDLE = "idle", "idle for too long"
        BUDGET = "budget", "budget used up"
        DAILY_CAP = "daily_cap", "daily cost cap reached"
        TERM_END = "term_end", "the term ended"
        STAFF = "staff", "by course staff"
        SPOT = "spot", "AWS reclaimed the spot capacity"
        REVOKED = "revoked", "access to the course revoked"
        OUTSIDE = "outside", "outside Lens (in the AWS console or by AWS)"

    owner = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="workspaces")
    template = models.ForeignKey(WorkspaceTemplate, on_delete=models.PROTECT,
                                 related_name="workspaces")
    cloud_account = models.ForeignKey(CloudAccount, on_delete=models.PROTECT,
                                      related_name="workspaces")
    name = models.CharField(max_length=63)
    state = models.CharField(max_length=20, choices=State.choices, default=State.REQUESTED)
    state_changed_at = models.DateTimeField(auto_now_add=True)
    instance_type = models.CharField(max_length=32, help_text="Copied from the template at launch.")
    market = models.CharField(max_length=16, default="on_demand",
                              choices=[("on_demand", "On-demand"), ("spot", "Spot")])
    root_volume_gib = models.PositiveIntegerField(default=0)
    home_volume_gib = models.PositiveIntegerField(default=0)
    # Prices fixed at launch: metering never re-prices a run after the fact.
    compute_usd_per_hour = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    storage_usd_per_hour = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    instance_id = models.CharField(max_length=40, blank=True)
    client_token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    public_ip = models.GenericIPAddressField(null=True, blank=True)
    private_ip = models.GenericIPAddressField(null=True, blank=True)
    public_dns = models.CharField(max_length=200, blank=True)
    home_volume_id = models.CharField(max_length=40, blank=True)
    # The EC2 key pair the instance was launched with (empty: none, the owner had no key).
    key_name = models.CharField(max_length=255, blank=True)
    # While a reset runs: which step it is on, for the card's progress line.
    reset_step = models.CharField(max_length=12, blank=True)
    stop_reason = models.CharField(max_length=20, choices=StopReason.choices, blank=True)
    # The session summary, written when the workspace stops.
    last_session_seconds = models.PositiveIntegerField(null=True, blank=True)
    last_session_cost = models.DecimalField(max_digits=14, decimal_places=6, null=True,
                                            blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    # The activity agent: its token is only ever kept hashed (sha256 hex).
    agent_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.JSONField(default=dict, blank=True)
    # Idle auto-stop: the warning sent (and the stop time it promised), and the
    # "your job looks finished" notice. Each counts for one idle stretch only.
    idle_warned_at = models.DateTimeField(null=True, blank=True)
    idle_stop_at = models.DateTimeField(null=True, blank=True)
    job_finished_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = WorkspaceQuerySet.as_manager()
    # Set by launch and start: the budget guard's runway warning, for the response.
    launch_warning = ""

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state"]), models.Index(fields=["owner", "state"])]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"],
                condition=~models.Q(state__in=[State.TERMINATED, State.ARCHIVED]),
                name="workspace_name_unique_per_owner",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_state_display()})"

    @property
    def launch_progress(self) -> int:
        """Percent along requested → pending → running, for the card's bar."""
        if self.state not in LAUNCH_STEPS:
            return 0
        return round(100 * (LAUNCH_STEPS.index(State(self.state)) + 1) / len(LAUNCH_STEPS))

    @property
    def is_launching(self) -> bool:
        return self.state in {State.REQUESTED, State.PENDING}

    @property
    def last_session_text(self) -> str:
        if self.last_session_seconds is None:
            return ""
        hours, rest = divmod(self.last_session_seconds, 3600)
        minutes = rest // 60
        length = f"{hours} h {minutes} min" if hours else f"{max(minutes, 1)} min"
        cost = self.last_session_cost
        return f"{length}, ${cost:.2f}" if cost >= 1 else f"{length}, ${cost:.4f}"

    @property
    def idle_stop_minutes(self) -> int | None:
        """The idle policy that applies: the template's, else the course's, else none."""
        if self.template.idle_stop_minutes:
            return self.template.idle_stop_minutes
        return self.owner.course.idle_stop_minutes or None

    @property
    def idle_policy_text(self) -> str:
        minutes = self.idle_stop_minutes
        if not minutes:
            return ""
        hours, rest = divmod(minutes, 60)
        length = " ".join(filter(None, [f"{hours} h" if hours else "",
                                        f"{rest} min" if rest else ""]))
        return f"Stops after {length} idle"

    @property
    def idle_warning_active(self) -> bool:
        """A warning from this run, still standing (the sweep clears it on activity)."""
        return (self.state == State.RUNNING and self.idle_warned_at is not None
                and self.idle_stop_at is not None and self.idle_warned_at >= self.state_changed_at)

    @property
    def job_finished_active(self) -> bool:
        return (self.state == State.RUNNING and self.job_finished_at is not None
                and self.job_finished_at >= self.state_changed_at)

    @property
    def can_stop(self) -> bool:
        return self.state == State.RUNNING

    @property
    def can_start(self) -> bool:
        return self.state == State.STOPPED

    @property
    def can_hibernate(self) -> bool:
        return self.state == State.RUNNING and self.template.hibernation

    @property
    def can_reset(self) -> bool:
        return self.state in {State.RUNNING, State.STOPPED, State.FAILED} and not self.reset_step

    @property
    def can_delete(self) -> bool:
        return self.state not in {State.TERMINATING, State.TERMINATED, State.ARCHIVED}

    @property
    def backup_retention_days(self) -> int:
        return settings.LENS_BACKUP_RETENTION_DAYS

    @property
    def reset_progress_text(self) -> str:
        return WorkspaceReset.STEP_TEXT.get(self.reset_step, "")


class WorkspaceEvent(models.Model):
    """One state change: the history metering, audit and timelines read."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=20, choices=State.choices, blank=True,
                                  help_text="Empty for the event that created the workspace.")
    to_state = models.CharField(max_length=20, choices=State.choices)
    at = models.DateTimeField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["workspace", "at"])]

    def __str__(self) -> str:
        return f"{self.workspace_id}: {self.from_state} → {self.to_state} at {self.at:%Y-%m-%d}"


class WorkspaceReset(models.Model):
    """One reset: who asked, and how far the backup-and-replace has got.

    The Celery task reads `step` to resume where a previous run stopped; the
    workspace's `reset_step` mirrors it for the card. (Lens has no
    AuditEvent table yet: this row and the WorkspaceEvent are the record.)
    """

    class Step(models.TextChoices):
        BACKUP = "backup", "Backing up"
        REPLACE = "replace", "Replacing the machine"
        ATTACH = "attach", "Reattaching the home volume"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    STEP_TEXT = {
        Step.BACKUP: "Backing up the machine…",
        Step.REPLACE: "Replacing the machine…",
        Step.ATTACH: "Reattaching your home…",
    }

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="resets")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    step = models.CharField(max_length=12, choices=Step.choices, default=Step.BACKUP)
    old_instance_id = models.CharField(max_length=40, blank=True)
    new_instance_id = models.CharField(max_length=40, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"reset {self.pk} of workspace {self.workspace_id} ({self.step})"


class WorkspaceBackup(models.Model):
    """An EBS snapshot Lens took (before a reset, or of the home at deletion), kept N days."""

    class Kind(models.TextChoices):
        ROOT_BEFORE_RESET = "root_before_reset", "Machine disk before a reset"
        HOME_AT_DELETE = "home_at_delete", "Home volume when the workspace was deleted"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="backups")
    reset = models.OneToOneField(WorkspaceReset, null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="backup")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    snapshot_id = models.CharField(max_length=40, unique=True)
    volume_id = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)
    delete_after = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["delete_after"], condition=models.Q(deleted_at=None),
                                name="backup_expiring")]

    def __str__(self) -> str:
        return f"{self.snapshot_id} of workspace {self.workspace_id}"


class BudgetWatch(models.Model):
    """When to look again at a member's money: the moment it would run out.

    A scheduled check carries the token it was made with; a newer schedule
    changes the token, so an outdated check does nothing.
    """

    membership = models.OneToOneField(Membership, on_delete=models.CASCADE, primary_key=True,
                                      related_name="budget_watch")
    token = models.UUIDField(default=uuid.uuid4)
    check_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=20, blank=True, help_text="budget or daily_cap")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"watch {self.membership_id} at {self.check_at}"


class KeyPair(models.Model):
    """A person's SSH public key: the one key their workspaces accept.

    One per user, used in every course they are in, never shared: a public
    key registered to one person is refused for anyone else, so nobody's
    private key opens another person's machine. Lens keeps only the public
    half; a generated private key is handed over once and forgotten.
    """

    class Source(models.TextChoices):
        UPLOADED = "uploaded", "uploaded"
        GENERATED = "generated", "generated by Lens"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="ssh_key")
    name = models.CharField(max_length=100, blank=True, help_text="The key's comment.")
    key_type = models.CharField(max_length=40)
    public_key = models.TextField(help_text="One OpenSSH line: type, base64, comment.")
    fingerprint = models.CharField(max_length=60, unique=True,
                                   help_text="SHA256, as ssh-keygen -l prints it.")
    source = models.CharField(max_length=12, choices=Source.choices)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.fingerprint} ({self.user_id})"

    @property
    def aws_key_name(self) -> str:
        """The EC2 key pair name: per user and per key, so a new key gets a new name."""
        digest = self.fingerprint.removeprefix("SHA256:")
        safe = "".join(c for c in digest if c.isalnum())[:12]
        return f"lens-u{self.user_id}-{safe}"

    @property
    def private_key_path(self) -> str:
        """Where the private half most likely is on the person's computer."""
        if self.source == self.Source.GENERATED:
            return "~/.ssh/lens_ed25519"
        return {"ssh-ed25519": "~/.ssh/id_ed25519", "ssh-rsa": "~/.ssh/id_rsa"}.get(
            self.key_type, "~/.ssh/id_ed25519")


class LaunchQueueEntry(models.Model):
    """A place in line for a course's capacity-limited template (a GPU pool).

    The workspace waits in state `queued` while its entry is `waiting`; the
    line is ordered by (created_at, id). Entries are kept after they leave the
    line, so staff can see who was admitted or skipped and why.
    """

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting"
        ADMITTED = "admitted", "Admitted"
        CANCELLED = "cancelled", "Left the queue"
        SKIPPED = "skipped", "Skipped"

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="launch_queue")
    template = models.ForeignKey(WorkspaceTemplate, on_delete=models.PROTECT, related_name="+")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE,
                                   related_name="launch_queue_entries")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE,
                                  related_name="queue_entries")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.WAITING)
    created_at = models.DateTimeField(auto_now_add=True)
    admitted_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True,
                                     help_text="When it left the line (admitted, left, skipped).")
    reason = models.CharField(max_length=500, blank=True,
                              help_text="Why it was skipped or left the line.")

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name_plural = "launch queue entries"
        indexes = [models.Index(fields=["course", "template", "status", "created_at"])]
        constraints = [
            models.UniqueConstraint(fields=["workspace"],
                                    condition=models.Q(status="waiting"),
                                    name="one_waiting_entry_per_workspace"),
        ]

    def __str__(self) -> str:
        return f"{self.workspace_id} in line for {self.template_id} ({self.status})"


class OrphanInstance(models.Model):
    """An instance carrying Lens's tags that no live workspace accounts for.

    The reconciler records it, tells staff once, and stops it (or adopts it
    into a workspace whose launch task died before it could write the id).
    Instances cost money whoever started them; this is where staff see them.
    """

    class Action(models.TextChoices):
        NONE = "", "none (already stopped)"
        STOPPED = "stopped", "stopped by Lens"
        ADOPTED = "adopted", "adopted into its workspace"

    cloud_account = models.ForeignKey(CloudAccount, on_delete=models.CASCADE,
                                      related_name="orphans")
    instance_id = models.CharField(max_length=40)
    instance_type = models.CharField(max_length=32, blank=True)
    aws_state = models.CharField(max_length=20, help_text="EC2's state when last looked at.")
    tags = models.JSONField(default=dict)
    workspace_id = models.BigIntegerField(null=True, blank=True,
                                          help_text="The workspace its tag names, if any.")
    course_id = models.BigIntegerField(null=True, blank=True,
                                       help_text="The course its tag names, if any.")
    why = models.CharField(max_length=200)
    action = models.CharField(max_length=20, choices=Action.choices, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True,
                                       help_text="When it was adopted or AWS stopped listing it.")

    class Meta:
        ordering = ["-first_seen"]
        constraints = [
            models.UniqueConstraint(fields=["cloud_account", "instance_id"],
                                    name="orphan_instance_unique")
        ]

    def __str__(self) -> str:
        return f"{self.instance_id} ({self.why})"
