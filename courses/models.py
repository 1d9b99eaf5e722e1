"""People and policy: a course and who belongs to it, in which role."""

from __future__ import annotations

import zoneinfo
from decimal import Decimal

from django.conf import settings
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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [models.UniqueConstraint(Lower("code"), name="course_code_unique_ci")]

    def __str__(self) -> str:
        return f"{self.code} — {self.title}"

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
