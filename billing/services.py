"""Billing services other apps call: prices now; the guard and ledger later."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

from django.db import transaction

from billing.models import InstancePrice

BUNDLED_PRICES = Path(__file__).parent / "data" / "prices.json"


class PriceNotFound(LookupError):
    """No price is known: Lens refuses rather than price anything at zero."""

    def __init__(self, *, region: str, instance_type: str, market: str):
        self.region, self.instance_type, self.market = region, instance_type, market
        super().__init__(
            f"Lens has no {market.replace('_', '-')} price for {instance_type} in {region}; "
            "ask an administrator to refresh the price catalog."
        )


def price_get(*, region: str, instance_type: str,
              market: str = InstancePrice.Market.ON_DEMAND) -> InstancePrice:
    try:
        return InstancePrice.objects.get(region=region, instance_type=instance_type, market=market)
    except InstancePrice.DoesNotExist:
        raise PriceNotFound(region=region, instance_type=instance_type, market=market) from None


def price_map(*, keys: set[tuple[str, str]],
              market: str = InstancePrice.Market.ON_DEMAND) -> dict[tuple[str, str], InstancePrice]:
    """Prices for many (region, instance type) pairs in one query."""
    if not keys:
        return {}
    regions = {region for region, _ in keys}
    types = {instance_type for _, instance_type in keys}
    rows = InstancePrice.objects.filter(region__in=regions, instance_type__in=types, market=market)
    return {(p.region, p.instance_type): p for p in rows if (p.region, p.instance_type) in keys}


def prices_load_bundled(*, path: Path = BUNDLED_PRICES) -> int:
    """Load the bundled price snapshot; re-running it updates rather than duplicates."""
    data = json.loads(path.read_text())
    fetched_on = date.fromisoformat(data["fetched_on"])
    with transaction.atomic():
        for row in data["prices"]:
            InstancePrice.objects.update_or_create(
                region=row["region"],
                instance_type=row["instance_type"],
                market=row.get("market", InstancePrice.Market.ON_DEMAND),
                defaults={
                    "usd_per_hour": Decimal(row["usd_per_hour"]),
                    "vcpu": row["vcpu"],
                    "memory_gib": Decimal(row["memory_gib"]),
                    "gpu_count": row["gpu_count"],
                    "gpu_model": row["gpu_model"],
                    "gpu_memory_gib": row["gpu_memory_gib"],
                    "source": data["source"],
                    "fetched_on": fetched_on,
                },
            )
    return len(data["prices"])
