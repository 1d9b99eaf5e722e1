"""People and policy: a course and who belongs to it, in which role."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Lower


def _zone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


class Course(models.Model):
    class Kind(models.TextChoices):
        CLASS = "class", "Class"
        LAB = "lab", "Research lab"
        WORKSHOP = "workshop", "Workshop"
        PERSONAL = "personal", "Personal"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        CLOSING = "closing", "Closing"
        CLOSED = "closed", "Closed"

    code = models.CharField(max_length=40, help_text="Short code, e.g. CS229-F26.")
    title = models.CharField(max_length=200)
    term_label = models.CharField(max_length=60, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.CLASS)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    time_zone = models.CharField(max_length=64, choices=_zone_choices, default="UTC")
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    region = models.CharField(max_length=32, default="us-east-1")
    budget_total = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    default_member_budget = models.DecimalField(
        max_digits=12, decimal_places=2, default=Decimal("0")
    )
    max_concurrent_workspaces = models.PositiveSmallIntegerField(default=1)
    max_daily_cost = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    idle_stop_minutes = models.PositiveIntegerField(null=True, blank=True)
    expected_students = models.PositiveIntegerField(
        null=True, blank=True, help_text="For planning the budget; the roster decides who is in.")
    # What the term-end close does at ends_at.
    term_end_stop = models.BooleanField(default=True, help_text="Stop every running workspace.")
    term_end_archive = models.BooleanField(default=True,
                                           help_text="Archive students' workspaces.")
    term_end_revoke = models.BooleanField(default=True, help_text="Revoke students' access.")
    term_end_report = models.BooleanField(default=True,
                                          help_text="Email the final cost report to staff.")
    retention_days = models.PositiveIntegerField(
        default=365, help_text="How long archived work is kept after the term.")
    head_ta_may_approve = models.BooleanField(
        default=False, help_text="Head TAs may approve or deny students' requests.")
    # Workshops (kind=workshop): participants join with the access code and an
    # email, no roster, from the start for `workshop_duration_minutes`; they keep
    # access for the extension after that, then the end sweep revokes them.
    # `workshop_access_ends_at` is start + duration + extension, stored so the
    # sweep can find due workshops with an index instead of arithmetic.
    access_code = models.CharField(max_length=24, blank=True)
    workshop_starts_at = models.DateTimeField(null=True, blank=True)
    workshop_duration_minutes = models.PositiveIntegerField(null=True, blank=True)
    workshop_extension_minutes = models.PositiveIntegerField(null=True, blank=True)
    workshop_max_participants = models.PositiveIntegerField(null=True, blank=True)
    workshop_access_ends_at = models.DateTimeField(null=True, blank=True, db_index=True)
    duplicated_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="duplicates")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(Lower("code"), name="course_code_unique_ci"),
            models.UniqueConstraint("access_code", condition=~models.Q(access_code=""),
                                    name="course_access_code_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.code} — {self.title}"

    @property
    def workshop_ends_at(self):
        """When joining stops (the extension, if any, follows)."""
        if self.workshop_starts_at is None or not self.workshop_duration_minutes:
            return None
        return self.workshop_starts_at + timedelta(minutes=self.workshop_duration_minutes)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class Section(models.Model):
    """A named group of a course's members ("A", "Lab 2"): what rosters are filtered
    and reports are grouped by. Members keep the name in `Membership.section`, so
    a roster import can only name sections the course has."""

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="sections")
    name = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["course", "name"]
        constraints = [
            models.UniqueConstraint("course", Lower("name"), name="section_name_unique_ci"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.course.code})"


class MembershipQuerySet(models.QuerySet):
    def active(self) -> MembershipQuerySet:
        return self.filter(status=Membership.Status.ACTIVE)

    def of_user(self, user) -> MembershipQuerySet:
        return self.filter(user=user)


class Membership(models.Model):
    class Role(models.TextChoices):
        INSTRUCTOR = "instructor", "Instructor"
        HEAD_TA = "head_ta", "Head TA"
        TA = "ta", "TA"
        STUDENT = "student", "Student"

    class Status(models.TextChoices):
        INVITED = "invited", "Invited"
        ACTIVE = "active", "Active"
        REVOKED = "revoked", "Revoked"

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="memberships",
        help_text="Empty until the invited person signs in.",
    )
    email = models.EmailField()
    name = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.STUDENT)
    section = models.CharField(max_length=40, blank=True)
    budget_cap = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.INVITED)
    created_at = models.DateTimeField(auto_now_add=True)
    # Invitations: who asked, when the latest was asked for and when it went out.
    # A send task that runs twice sees sent >= asked and sends nothing.
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    invited_at = models.DateTimeField(null=True, blank=True)
    invitation_sent_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        ordering = ["course", "email"]
        constraints = [
            models.UniqueConstraint("course", Lower("email"), name="membership_email_unique_ci"),
        ]

    def __str__(self) -> str:
        return f"{self.email} in {self.course.code} ({self.get_role_display()})"

    @property
    def is_staff_role(self) -> bool:
        return self.role != self.Role.STUDENT

    @property
    def display_name(self) -> str:
        return self.name or self.email


class Approval(models.Model):
    """A member's request for a template that needs approval, or for more budget,
    and the staff decision on it.

    Templates are named by slug (courses does not know provisioning's
    templates); an approved request with `expires_at` stops applying at that
    moment, and the expiry sweep then marks it expired (and takes back a
    budget grant). `granted_amount` is what an approval added to the cap, so
    expiry takes back exactly that.
    """

    class Kind(models.TextChoices):
        TEMPLATE = "template", "Template"
        BUDGET = "budget", "Budget increase"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        EXPIRED = "expired", "Expired"
        WITHDRAWN = "withdrawn", "Withdrawn"

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="approvals")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE,
                                   related_name="approvals", help_text="Who asked.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    template_slug = models.CharField(max_length=60, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True,
                                 help_text="Budget requests: how much more, in USD.")
    reason = models.TextField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=500, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: no expiry.")
    granted_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True,
                                         blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The member has seen the latest outcome in the app; the email for the
    # latest status went out (compare-and-swap, so a task run twice sends once).
    seen_at = models.DateTimeField(null=True, blank=True)
    notified_status = models.CharField(max_length=20, blank=True)
    # When the course's deciders were emailed about this request (once).
    staff_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["course", "status"]),
                   models.Index(fields=["status", "expires_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["membership", "kind", "template_slug"],
                condition=models.Q(status="pending"), name="approval_one_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.what} for {self.membership_id} ({self.status})"

    @property
    def what(self) -> str:
        if self.kind == self.Kind.TEMPLATE:
            return self.template_slug
        return f"${self.amount:,.2f} more budget"


# --- LTI 1.3 (sign-in and roster from an LMS; services in courses/lti.py) ---


class LtiPlatform(models.Model):
    """An LMS registration: what the LMS told us when the tool was installed there.

    Canvas cloud shares one issuer (https://canvas.instructure.com) between all
    schools, so a platform is the pair (issuer, client_id), not the issuer.
    """

    name = models.CharField(max_length=120, help_text="e.g. University Canvas.")
    issuer = models.URLField(max_length=300, help_text="The `iss` the LMS puts in its tokens.")
    client_id = models.CharField(max_length=200, help_text="The tool's client id in the LMS "
                                 "(Canvas: the developer key's id).")
    auth_login_url = models.URLField(max_length=500, help_text="OIDC authorization endpoint.")
    auth_token_url = models.URLField(max_length=500, help_text="OAuth 2 token endpoint.")
    token_audience = models.CharField(
        max_length=500, blank=True,
        help_text="`aud` of the tool's token request, when the LMS wants something other "
                  "than the token URL.")
    jwks_url = models.URLField(max_length=500, help_text="Where the LMS publishes its public "
                               "keys.")
    deployment_ids = ArrayField(
        models.CharField(max_length=255), default=list, blank=True,
        help_text="Deployments of the tool that may launch, separated by commas "
                  "(Canvas shows them as e.g. 1:4dde05e8ca1973bcca9bffc13e1548820eee93a3).")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "LTI platform"
        constraints = [
            models.UniqueConstraint("issuer", "client_id", name="lti_platform_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class LtiToolKey(models.Model):
    """The tool's RSA key pair. The public half is served at /lti/jwks/; the
    private half is encrypted at rest with a key derived from SECRET_KEY."""

    kid = models.CharField(max_length=64, unique=True)
    public_jwk = models.JSONField()
    private_key_encrypted = models.BinaryField()
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "LTI tool key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.kid


class LtiContext(models.Model):
    """An LMS course (context) seen in a launch, and the Lens course it is linked to."""

    platform = models.ForeignKey(LtiPlatform, on_delete=models.CASCADE, related_name="contexts")
    context_id = models.CharField(max_length=255)
    deployment_id = models.CharField(max_length=255)
    title = models.CharField(max_length=255, blank=True)
    label = models.CharField(max_length=255, blank=True)
    course = models.ForeignKey(Course, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="lti_contexts")
    memberships_url = models.URLField(
        max_length=500, blank=True,
        help_text="Names and Role Provisioning Services URL from the latest launch.")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_sync_report = models.JSONField(default=dict, blank=True)
    last_sync_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "LTI context"
        constraints = [
            models.UniqueConstraint("platform", "context_id", name="lti_context_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.title or self.context_id} ({self.platform})"


class LtiLoginState(models.Model):
    """One OIDC login in flight: the state and nonce we sent, used at most once."""

    state = models.CharField(max_length=64, unique=True)
    nonce = models.CharField(max_length=64)
    platform = models.ForeignKey(LtiPlatform, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "LTI login state"

    def __str__(self) -> str:
        return f"login to {self.platform} at {self.created_at:%Y-%m-%d %H:%M}"


# --- messages and the help queue (services in courses/inbox.py, courses/help_queue.py) ---
# Workspaces live in provisioning, which courses must not import: a message or
# help request keeps the workspace's id and its name as it was then, not a key.


class MessageQuerySet(models.QuerySet):
    def unread(self) -> MessageQuerySet:
        return self.filter(read_at__isnull=True)


class Message(models.Model):
    """A note from course staff to one student, shown on their dashboard and emailed."""

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                               related_name="+")
    sender_name = models.CharField(max_length=200, help_text="As the student saw it.")
    recipient = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="messages")
    subject = models.CharField(max_length=200)
    body = models.TextField()
    workspace_id = models.PositiveBigIntegerField(null=True, blank=True)
    workspace_name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index("recipient", "read_at", name="message_recipient_read")]

    def __str__(self) -> str:
        return f"“{self.subject}” to {self.recipient.email}"

    @property
    def is_unread(self) -> bool:
        return self.read_at is None


class HelpRequestQuerySet(models.QuerySet):
    def waiting(self) -> HelpRequestQuerySet:
        """Open or claimed: what is still in the queue."""
        return self.filter(status__in=HelpRequest.WAITING)


class HelpRequest(models.Model):
    """A student's "my training crashes": queued for the course's TAs, who claim
    and resolve it. At most one waiting request per student (a partial unique
    index), so a double click cannot queue the same student twice."""

    class Status(models.TextChoices):
        OPEN = "open", "Waiting"
        CLAIMED = "claimed", "Being helped"
        RESOLVED = "resolved", "Resolved"
        CANCELLED = "cancelled", "Cancelled"

    WAITING = (Status.OPEN, Status.CLAIMED)

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="help_requests")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE,
                                   related_name="help_requests")
    workspace_id = models.PositiveBigIntegerField(null=True, blank=True)
    workspace_name = models.CharField(max_length=100, blank=True)
    summary = models.CharField(max_length=200)
    details = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    claimed_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = HelpRequestQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint("membership", condition=models.Q(status__in=["open",
                                                                                 "claimed"]),
                                    name="help_request_one_waiting_per_member"),
        ]
        indexes = [models.Index("course", "status", name="help_request_course_status")]

    def __str__(self) -> str:
        return f"“{self.summary}” from {self.membership.email} ({self.get_status_display()})"

    @property
    def is_waiting(self) -> bool:
        return self.status in self.WAITING
