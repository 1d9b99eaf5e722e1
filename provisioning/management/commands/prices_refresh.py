"""Refresh the price catalog from AWS: the Price List API, and spot price history.

Everything is fetched before anything is written, and written in one
transaction, so a failure part-way leaves the catalog exactly as it was.
"""

from dataclasses import dataclass, field
from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from billing.models import InstancePrice
from billing.services import prices_upsert
from provisioning import aws
from provisioning.models import CloudAccount
from provisioning.services import cloud_account_default

ON_DEMAND = InstancePrice.Market.ON_DEMAND
SPOT = InstancePrice.Market.SPOT


@dataclass
class Batch:
    """What one source said, ready to write."""

    label: str
    source: str
    rows: list[dict] = field(default_factory=list)


class Command(BaseCommand):
    help = ("Refresh on-demand (and with --spot, spot) Linux prices from AWS. "
            "Nothing changes unless every region answers.")

    def add_arguments(self, parser):
        parser.add_argument("--region", action="append", dest="regions", required=True,
                            metavar="REGION", help="A region code; repeat for more regions.")
        parser.add_argument("--types", default="",
                            help="Comma-separated instance types; default: the region's types "
                                 "already in the catalog.")
        parser.add_argument("--spot", action="store_true",
                            help="Also record each type's current spot price (the highest "
                                 "availability zone's).")

    def handle(self, *args, regions, types, spot, **options):
        today = timezone.now().date()
        wanted = [t.strip() for t in types.split(",") if t.strip()]
        plans = [_plan(region, wanted) for region in dict.fromkeys(regions)]
        account = cloud_account_default()
        notes: list[str] = []
        batches: list[Batch] = []
        for region, location, region_types in plans:
            try:
                batches += _fetch(account, region=region, location=location,
                                  instance_types=region_types, spot=spot, today=today,
                                  notes=notes)
            except aws.AwsError as exc:
                raise CommandError(f"Could not fetch prices for {region} from AWS, so nothing "
                                   f"was changed: {exc}") from exc

        with transaction.atomic():
            results = [(batch, prices_upsert(rows=batch.rows, source=batch.source,
                                             fetched_on=today))
                       for batch in batches]

        for batch, done in results:
            for change in done.changes:
                self.stdout.write(str(change))
            kept = f", {done.skipped} kept (the catalog's are newer)" if done.skipped else ""
            self.stdout.write(f"{batch.label}: {done.created} new, {done.updated} changed, "
                              f"{done.unchanged} unchanged{kept}.")
        for note in notes:
            self.stdout.write(self.style.WARNING(note))


def _plan(region: str, wanted: list[str]) -> tuple[str, str, list[str]]:
    try:
        location = aws.pricing_location(region)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    types = wanted or list(InstancePrice.objects.filter(region=region).order_by("instance_type")
                           .values_list("instance_type", flat=True).distinct())
    if not types:
        raise CommandError(f"The catalog has no prices for {region} yet; "
                           "name the instance types with --types.")
    return region, location, types


def _fetch(account: CloudAccount, *, region: str, location: str, instance_types: list[str],
           spot: bool, today: date, notes: list[str]) -> list[Batch]:
    on_demand = Batch(f"{region} on-demand",
                      f"AWS Price List API (GetProducts, {location}), fetched {today}")
    for product in aws.pricing_ec2_products(account, location=location,
                                            instance_types=instance_types):
        on_demand.rows.append({"region": region, "market": ON_DEMAND, **product})
    priced = {row["instance_type"] for row in on_demand.rows}
    notes += [f"{region} {t}: AWS lists no on-demand Linux price; left unchanged."
              for t in instance_types if t not in priced]
    if not spot:
        return [on_demand]

    spot_batch = Batch(f"{region} spot", f"EC2 spot price history (DescribeSpotPriceHistory, "
                                         f"highest zone in {region}), fetched {today}")
    prices = aws.spot_prices_latest(_in_region(account, region), instance_types=instance_types)
    sized = priced | set(InstancePrice.objects.filter(
        region=region, market=ON_DEMAND, instance_type__in=instance_types)
        .values_list("instance_type", flat=True))
    for instance_type in instance_types:
        if instance_type not in prices:
            notes.append(f"{region} {instance_type}: AWS reports no spot price; left unchanged.")
        elif instance_type not in sized:
            notes.append(f"{region} {instance_type}: no on-demand price to take its size from, "
                         "so its spot price was not recorded.")
        else:
            spot_batch.rows.append({"region": region, "instance_type": instance_type,
                                    "market": SPOT, "usd_per_hour": prices[instance_type]})
    return [on_demand, spot_batch]


def _in_region(account: CloudAccount, region: str) -> CloudAccount:
    """The same credentials and endpoint, aimed at another region (never saved)."""
    return CloudAccount(name=account.name, region=region, endpoint_url=account.endpoint_url,
                        role_arn=account.role_arn)
