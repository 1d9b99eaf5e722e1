"""Money: the price catalog (the ledger and metering come with the billing issue)."""

from decimal import Decimal

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
