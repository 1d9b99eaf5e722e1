"""Money: the price catalog (the ledger and metering come with the billing issue)."""

from decimal import Decimal

from django.conf import settings
from django.db import models


class InstancePrice(models.Model):
    class Market(models.TextChoices):
        ON_DEMAND = "on_demand", "On-demand"
        SPOT = "spot", "Spot"

    region = models.CharField(max_length=32)
    instance_type = models.CharField(max_length=32)
    market = models.CharField(max_length=16, choices=Market.choices, default=Market.ON_DEMAND)
    usd_per_hour = models.DecimalField(max_digits=12, decimal_places=6)
    vcpu = models.PositiveSmallIntegerField()
    memory_gib = models.DecimalField(max_digits=8, decimal_places=2)
    gpu_count = models.PositiveSmallIntegerField(default=0)
    gpu_model = models.CharField(max_length=60, blank=True)
    gpu_memory_gib = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=200, help_text="Where the price came from.")
    fetched_on = models.DateField()

    class Meta:
        ordering = ["region", "instance_type", "market"]
        constraints = [
            models.UniqueConstraint(
                fields=["region", "instance_type", "market"], name="instance_price_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(usd_per_hour__gt=Decimal("0")), name="instance_price_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instance_type} {self.region} {self.market} ${self.usd_per_hour}/h"

    @property
    def usd_per_day(self) -> Decimal:
        return self.usd_per_hour * 24


class LedgerEntry(models.Model):
    """One line of money history. Append-only: PostgreSQL refuses UPDATE and DELETE.

    Amounts are positive. Spend = Σ usage + Σ adjustment (an adjustment may be
    negative: a credit). Committed = spend + the unused part of open holds.
    A `cap` entry records a change of the member's budget cap (amount = the new
    cap); it is not spend. Workspaces are referred to by id only, so billing
    does not depend on provisioning.
    """

    class Kind(models.TextChoices):
        HOLD = "hold", "Hold"
        RELEASE = "release", "Release"
        USAGE = "usage", "Usage"
        ADJUSTMENT = "adjustment", "Adjustment"
        CAP = "cap", "Cap change"

    class Meter(models.TextChoices):
        COMPUTE = "compute", "Compute"
        STORAGE = "storage", "Storage"

    membership = models.ForeignKey("courses.Membership", on_delete=models.PROTECT,
                                   related_name="ledger_entries")
    course = models.ForeignKey("courses.Course", on_delete=models.PROTECT,
                               related_name="ledger_entries")
    workspace_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    meter = models.CharField(max_length=16, choices=Meter.choices, blank=True)
    amount = models.DecimalField(max_digits=18, decimal_places=6)
    usd_per_hour = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True,
                                       help_text="The rate a usage line was priced at.")
    interval_start = models.DateTimeField(null=True, blank=True)
    interval_end = models.DateTimeField(null=True, blank=True)
    hold = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                             related_name="releases", help_text="The hold a release closes.")
    idempotency_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.PROTECT,
                              related_name="+")
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["membership", "kind"]),
            models.Index(fields=["course", "kind"]),
            models.Index(fields=["workspace_id", "meter", "interval_start"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind="adjustment") | models.Q(amount__gte=0),
                name="ledger_amount_not_negative_except_adjustments",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} for {self.membership_id}"


class StoragePrice(models.Model):
    """EBS price per GB-month: home volumes cost money while stopped, so they are metered too."""

    region = models.CharField(max_length=32)
    volume_type = models.CharField(max_length=16, default="gp3")
    usd_per_gb_month = models.DecimalField(max_digits=12, decimal_places=6)
    source = models.CharField(max_length=200, help_text="Where the price came from.")
    fetched_on = models.DateField()

    class Meta:
        ordering = ["region", "volume_type"]
        constraints = [
            models.UniqueConstraint(fields=["region", "volume_type"], name="storage_price_unique"),
            models.CheckConstraint(
                condition=models.Q(usd_per_gb_month__gt=Decimal("0")),
                name="storage_price_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.volume_type} {self.region} ${self.usd_per_gb_month}/GB-month"


class BudgetAlert(models.Model):
    """A threshold (50/80/100 % of a cap) that was crossed, sent once.

    For a member (membership set) or for the whole course (membership empty).
    The unique constraints make "once" hold even when sweeps race. A `storage`
    alert tells staff that the disks of a member's stopped workspaces will
    cost more than is left before the term ends (Lens does not delete them).
    """

    class Kind(models.TextChoices):
        SPEND = "spend", "Spend"
        STORAGE = "storage", "Disks will pass the cap"

    course = models.ForeignKey("courses.Course", on_delete=models.CASCADE,
                               related_name="budget_alerts")
    membership = models.ForeignKey("courses.Membership", null=True, blank=True,
                                   on_delete=models.CASCADE, related_name="budget_alerts")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SPEND)
    threshold = models.PositiveSmallIntegerField()
    spend = models.DecimalField(max_digits=18, decimal_places=6)
    cap = models.DecimalField(max_digits=12, decimal_places=2)
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["membership", "kind", "threshold"],
                                    condition=models.Q(membership__isnull=False),
                                    name="budget_alert_once_per_member"),
            models.UniqueConstraint(fields=["course", "kind", "threshold"],
                                    condition=models.Q(membership__isnull=True),
                                    name="budget_alert_once_per_course"),
        ]

    def __str__(self) -> str:
        return self.message


class ReportDelivery(models.Model):
    """A weekly report that was emailed, so each one goes out once per week.

    Kept in the database, not a cache, because "sent" must survive restarts
    and be shared by every worker. The unique key is what was sent, to whom
    (their membership, which fixes the course) and the week (its Monday in
    the course's zone); a second run finds the row and sends nothing.
    """

    class Kind(models.TextChoices):
        MEMBER = "member", "Member's weekly report"
        COURSE = "course", "Course weekly report"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    recipient = models.ForeignKey("courses.Membership", on_delete=models.CASCADE,
                                  related_name="report_deliveries")
    week_start = models.DateField(help_text="Monday of the week, in the course's time zone.")
    email = models.EmailField(help_text="The address it was sent to.")
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-sent_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "recipient", "week_start"],
                                    name="report_delivery_once_per_week"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} report for week of {self.week_start} to {self.email}"
