"""Billing services other apps call: prices now; the guard and ledger later."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

from django.db import transaction

from billing.models import InstancePrice, StoragePrice

BUNDLED_PRICES = Path(__file__).parent / "data" / "prices.json"
STORAGE = "storage"  # the `market` a storage PriceChange reports
_SPEC_FIELDS = ("vcpu", "memory_gib", "gpu_count", "gpu_model", "gpu_memory_gib")
_SIX_PLACES = Decimal("0.000001")


class PriceNotFound(LookupError):
    """No price is known: Lens refuses rather than price anything at zero."""

    def __init__(self, *, region: str, instance_type: str, market: str):
        self.region, self.instance_type, self.market = region, instance_type, market
        super().__init__(
            f"Lens has no {market.replace('_', '-')} price for {instance_type} in {region}; "
            "ask an administrator to refresh the price catalog."
        )


class StoragePriceNotFound(LookupError):
    """No storage price is known: volumes are never metered at zero."""

    def __init__(self, *, region: str, volume_type: str):
        self.region, self.volume_type = region, volume_type
        super().__init__(
            f"Lens has no {volume_type} storage price for {region}; "
            "ask an administrator to refresh the price catalog."
        )


@dataclass(frozen=True)
class PriceChange:
    region: str
    item: str  # an instance type, or an EBS volume type
    market: str  # on_demand, spot, or STORAGE
    old: Decimal | None  # None: the catalog had no price before
    new: Decimal

    def __str__(self) -> str:
        unit = "GB-month" if self.market == STORAGE else "hour"
        label = f"{self.region} {self.item} {self.market.replace('_', '-')}"
        if self.old is None:
            return f"{label}: new, ${self.new} per {unit}"
        return f"{label}: ${self.old} → ${self.new} per {unit}"


@dataclass
class PricesUpserted:
    """What an upsert did; `skipped` rows lost to a newer price already in the catalog."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    changes: list[PriceChange] = field(default_factory=list)


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


def storage_price_get(*, region: str, volume_type: str = "gp3") -> StoragePrice:
    try:
        return StoragePrice.objects.get(region=region, volume_type=volume_type)
    except StoragePrice.DoesNotExist:
        raise StoragePriceNotFound(region=region, volume_type=volume_type) from None


def prices_load_bundled(*, path: Path = BUNDLED_PRICES) -> int:
    """Load the bundled price snapshot; re-running it updates rather than duplicates.

    Prices refreshed from AWS after the snapshot was taken are kept.
    """
    data = json.loads(path.read_text())
    prices_upsert(rows=data["prices"], storage=data.get("storage", []), source=data["source"],
                  fetched_on=date.fromisoformat(data["fetched_on"]))
    return len(data["prices"]) + len(data.get("storage", []))


def prices_upsert(*, rows: Iterable[dict], source: str, fetched_on: date,
                  storage: Iterable[dict] = ()) -> PricesUpserted:
    """Write instance prices (on-demand or spot) and storage prices in one transaction.

    A row whose catalog price was fetched later than `fetched_on` is left alone,
    so loading an old snapshot never undoes a refresh. A spot row may leave out
    the machine's size: it is copied from the on-demand row for the same type.
    Prices are rounded up to the catalog's six places, never down to zero.
    """
    rows, storage = list(rows), list(storage)
    result = PricesUpserted()
    with transaction.atomic():
        _instance_prices_upsert(rows, source=source, fetched_on=fetched_on, result=result)
        _storage_prices_upsert(storage, source=source, fetched_on=fetched_on, result=result)
    return result


def _instance_prices_upsert(rows: list[dict], *, source: str, fetched_on: date,
                            result: PricesUpserted) -> None:
    if not rows:
        return
    on_demand = InstancePrice.Market.ON_DEMAND
    # On-demand first, so a spot row can borrow the size of a type new in this batch.
    rows = sorted(rows, key=lambda r: r.get("market", on_demand) != on_demand)
    existing = {
        (p.region, p.instance_type, p.market): p
        for p in InstancePrice.objects.select_for_update().filter(
            region__in={r["region"] for r in rows},
            instance_type__in={r["instance_type"] for r in rows})
    }
    new, changed = [], []
    for row in rows:
        key = (row["region"], row["instance_type"], row.get("market", on_demand))
        if key[2] not in InstancePrice.Market.values:
            raise ValueError(f"Unknown market {key[2]!r} for {key[1]} in {key[0]}.")
        usd = _money(row["usd_per_hour"], what=f"{key[1]} in {key[0]}")
        specs = {name: row[name] for name in _SPEC_FIELDS if row.get(name) is not None}
        if "memory_gib" in specs:
            specs["memory_gib"] = Decimal(str(specs["memory_gib"]))
        price = existing.get(key)
        if price is None:
            if "vcpu" not in specs or "memory_gib" not in specs:
                sibling = existing.get((key[0], key[1], on_demand))
                if sibling is None:
                    raise ValueError(f"{key[1]} in {key[0]} needs vcpu and memory_gib: the "
                                     "catalog has no on-demand row to copy them from.")
                specs = {name: getattr(sibling, name) for name in _SPEC_FIELDS} | specs
            price = InstancePrice(region=key[0], instance_type=key[1], market=key[2],
                                  usd_per_hour=usd, source=source, fetched_on=fetched_on, **specs)
            existing[key] = price
            new.append(price)
            result.created += 1
            result.changes.append(PriceChange(key[0], key[1], key[2], None, usd))
            continue
        if price.fetched_on > fetched_on:
            result.skipped += 1
            continue
        old = price.usd_per_hour
        resized = any(getattr(price, name) != value for name, value in specs.items())
        values = specs | {"usd_per_hour": usd, "source": source, "fetched_on": fetched_on}
        if any(getattr(price, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(price, name, value)
            if price.pk is not None:  # else it is new in this batch and not saved yet
                changed.append(price)
        if old != usd or resized:
            result.updated += 1
        else:
            result.unchanged += 1
        if old != usd:
            result.changes.append(PriceChange(key[0], key[1], key[2], old, usd))
    fields = ["usd_per_hour", *_SPEC_FIELDS, "source", "fetched_on"]
    InstancePrice.objects.bulk_create(new, update_conflicts=True, update_fields=fields,
                                      unique_fields=["region", "instance_type", "market"])
    InstancePrice.objects.bulk_update(changed, fields)


def _storage_prices_upsert(rows: list[dict], *, source: str, fetched_on: date,
                           result: PricesUpserted) -> None:
    if not rows:
        return
    existing = {
        (p.region, p.volume_type): p
        for p in StoragePrice.objects.select_for_update().filter(
            region__in={r["region"] for r in rows})
    }
    for row in rows:
        key = (row["region"], row.get("volume_type", "gp3"))
        usd = _money(row["usd_per_gb_month"], what=f"{key[1]} storage in {key[0]}")
        price = existing.get(key)
        if price is None:
            existing[key] = StoragePrice.objects.create(
                region=key[0], volume_type=key[1], usd_per_gb_month=usd, source=source,
                fetched_on=fetched_on)
            result.created += 1
            result.changes.append(PriceChange(key[0], key[1], STORAGE, None, usd))
            continue
        if price.fetched_on > fetched_on:
            result.skipped += 1
            continue
        old = price.usd_per_gb_month
        if (old, price.source, price.fetched_on) != (usd, source, fetched_on):
            price.usd_per_gb_month, price.source, price.fetched_on = usd, source, fetched_on
            price.save(update_fields=["usd_per_gb_month", "source", "fetched_on"])
        if old != usd:
            result.updated += 1
            result.changes.append(PriceChange(key[0], key[1], STORAGE, old, usd))
        else:
            result.unchanged += 1


def _money(value, *, what: str) -> Decimal:
    """A positive Decimal at the catalog's six places; floats and zero are refused."""
    if isinstance(value, float):
        raise TypeError(f"The price for {what} is a float; prices must be Decimal or text.")
    amount = Decimal(str(value)).quantize(_SIX_PLACES, rounding=ROUND_CEILING)
    if amount <= 0:
        raise ValueError(f"The price for {what} is {value}; Lens never records a zero price.")
    return amount
