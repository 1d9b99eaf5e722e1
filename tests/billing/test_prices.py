"""The price catalog: the bundled snapshot, lookups that refuse rather than
charge zero, and the refresh from AWS (Price List API replayed from recorded
responses, spot prices from moto)."""

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import NoCredentialsError
from botocore.stub import Stubber
from django.core.management import CommandError, call_command

from billing.models import InstancePrice, StoragePrice
from billing.services import (
    PriceNotFound,
    StoragePriceNotFound,
    price_get,
    prices_load_bundled,
    prices_upsert,
    storage_price_get,
)
from provisioning import aws
from provisioning.services import cloud_account_default

DATA = Path(__file__).parent / "data"
LINUX_ON_DEMAND = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                   "capacitystatus": "Used", "licenseModel": "No License required"}


def recorded(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def get_products_params(instance_type: str, *, location: str = "US East (N. Virginia)",
                        next_token: str | None = None) -> dict:
    filters = {"location": location, "instanceType": instance_type, **LINUX_ON_DEMAND}
    params = {"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1", "MaxResults": 100,
              "Filters": [{"Type": "TERM_MATCH", "Field": k, "Value": v}
                          for k, v in filters.items()]}
    if next_token:
        params["NextToken"] = next_token
    return params


class PriceList:
    """A pricing client whose answers are recorded responses, served by botocore's Stubber."""

    def __init__(self, endpoint: str):
        self.client = boto3.client("pricing", region_name="us-east-1", endpoint_url=endpoint)
        self.stubber = Stubber(self.client)
        self.stubber.activate()
        self.accounts = []  # the accounts the adapter asked for a pricing client with

    def answer(self, instance_type: str, *pages: str, location: str = "US East (N. Virginia)"):
        token = None
        for page in pages:
            response = recorded(page)
            self.stubber.add_response("get_products", response, get_products_params(
                instance_type, location=location, next_token=token))
            token = response.get("NextToken")

    def answer_us_east_1(self):
        self.answer("g4dn.xlarge", "get_products_g4dn.xlarge.json")
        self.answer("p3.2xlarge", "get_products_p3.2xlarge_page1.json",
                    "get_products_p3.2xlarge_page2.json")
        self.answer("t3.medium", "get_products_t3.medium.json")


@pytest.fixture
def price_list(monkeypatch, fake_aws):
    """The adapter's pricing client replays recorded answers; EC2 still goes to moto."""
    fake = PriceList(fake_aws)
    real_client = aws._client

    def client(account, service):
        if service != "pricing":
            return real_client(account, service)
        fake.accounts.append(account)
        return fake.client

    monkeypatch.setattr(aws, "_client", client)
    yield fake
    fake.stubber.deactivate()


@pytest.fixture
def small_catalog(prices):
    """The bundled catalog, with us-east-1 cut down to three types to keep AWS answers short."""
    InstancePrice.objects.filter(region="us-east-1").exclude(
        instance_type__in=["t3.medium", "g4dn.xlarge", "p3.2xlarge"]).delete()


def catalog() -> dict:
    return {(p.region, p.instance_type, p.market): (p.usd_per_hour, p.source, p.fetched_on)
            for p in InstancePrice.objects.all()}


# --- the bundled snapshot ------------------------------------------------------


def test_the_bundled_snapshot_loads_twice_without_duplicates_and_keeps_the_seed_prices(db):
    first = prices_load_bundled()
    counts = (InstancePrice.objects.count(), StoragePrice.objects.count())
    second = prices_load_bundled()

    assert first == second == 105
    assert (InstancePrice.objects.count(), StoragePrice.objects.count()) == counts == (102, 3)
    seed = {t: price_get(region="us-east-1", instance_type=t).usd_per_hour
            for t in ["t3.medium", "t3.large", "g4dn.xlarge", "p3.2xlarge"]}
    assert seed == {"t3.medium": Decimal("0.0416"), "t3.large": Decimal("0.0832"),
                    "g4dn.xlarge": Decimal("0.526"), "p3.2xlarge": Decimal("3.06")}


def test_the_bundled_snapshot_prices_seven_families_in_three_regions_with_their_gpus(prices):
    families = {t.split(".")[0] for t in InstancePrice.objects.values_list("instance_type",
                                                                            flat=True)}
    assert families == {"t3", "m6i", "c6i", "r6i", "g4dn", "g5", "p3"}
    for region in ["us-east-1", "us-west-2", "eu-west-1"]:
        assert InstancePrice.objects.filter(region=region).count() == 34

    g5 = price_get(region="us-east-1", instance_type="g5.12xlarge")
    assert (g5.vcpu, g5.memory_gib, g5.gpu_count, g5.gpu_model, g5.gpu_memory_gib) == (
        48, Decimal("192"), 4, "NVIDIA A10G", 24)
    p3 = price_get(region="us-west-2", instance_type="p3.16xlarge")
    assert (p3.gpu_count, p3.gpu_model, p3.gpu_memory_gib) == (8, "NVIDIA V100", 16)
    assert price_get(region="eu-west-1", instance_type="t3.medium").usd_per_hour == Decimal(
        "0.0456")
    us = {p.instance_type: p.usd_per_hour for p in InstancePrice.objects.filter(region="us-east-1")}
    eu = {p.instance_type: p.usd_per_hour for p in InstancePrice.objects.filter(region="eu-west-1")}
    assert all(eu[t] > us[t] for t in us)


def test_reloading_the_snapshot_keeps_prices_refreshed_since_it_was_taken(prices):
    prices_upsert(rows=[{"region": "us-east-1", "instance_type": "t3.medium",
                         "usd_per_hour": "0.0420"}],
                  source="AWS Price List API (GetProducts), fetched 2026-12-01",
                  fetched_on=date(2026, 12, 1))

    done = prices_upsert(rows=[{"region": "us-east-1", "instance_type": "t3.medium",
                                "usd_per_hour": "0.0416"}],
                         source="bundled", fetched_on=date(2026, 11, 1))

    assert (done.skipped, done.updated) == (1, 0)
    assert price_get(region="us-east-1", instance_type="t3.medium").usd_per_hour == Decimal(
        "0.042")


# --- lookups that refuse rather than price at zero ------------------------------


def test_it_refuses_to_price_a_type_it_has_no_price_for_rather_than_charge_zero(prices):
    with pytest.raises(PriceNotFound, match="no on-demand price for x9.huge in us-east-1; "
                                            "ask an administrator to refresh"):
        price_get(region="us-east-1", instance_type="x9.huge")


def test_it_refuses_a_region_the_catalog_does_not_cover(prices):
    with pytest.raises(PriceNotFound, match="t3.medium in ap-south-1") as refused:
        price_get(region="ap-south-1", instance_type="t3.medium")

    assert (refused.value.region, refused.value.market) == ("ap-south-1", "on_demand")


def test_it_refuses_a_spot_price_nobody_has_fetched(prices):
    with pytest.raises(PriceNotFound, match="no spot price for t3.medium in us-east-1"):
        price_get(region="us-east-1", instance_type="t3.medium", market="spot")


def test_storage_is_priced_per_gb_month_by_region(prices):
    assert storage_price_get(region="us-east-1").usd_per_gb_month == Decimal("0.08")
    assert storage_price_get(region="us-west-2", volume_type="gp3").usd_per_gb_month == Decimal(
        "0.08")
    assert storage_price_get(region="eu-west-1").usd_per_gb_month == Decimal("0.088")


def test_it_refuses_storage_it_has_no_price_for(prices):
    with pytest.raises(StoragePriceNotFound, match="no io2 storage price for us-east-1"):
        storage_price_get(region="us-east-1", volume_type="io2")
    with pytest.raises(StoragePriceNotFound, match="no gp3 storage price for ap-south-1"):
        storage_price_get(region="ap-south-1")


def test_it_refuses_to_record_a_zero_or_float_price(prices):
    row = {"region": "us-east-1", "instance_type": "t3.medium"}

    with pytest.raises(ValueError, match="never records a zero price"):
        prices_upsert(rows=[row | {"usd_per_hour": "0.0000000000"}], source="x",
                      fetched_on=date(2026, 11, 2))
    with pytest.raises(TypeError, match="float"):
        prices_upsert(rows=[row | {"usd_per_hour": 0.0416}], source="x",
                      fetched_on=date(2026, 11, 2))
    assert price_get(region="us-east-1", instance_type="t3.medium").usd_per_hour == Decimal(
        "0.0416")


# --- refreshing from AWS ------------------------------------------------------------


def test_it_refreshes_prices_from_the_price_list_api_and_says_what_changed(
        small_catalog, price_list, capsys):
    InstancePrice.objects.filter(region="us-east-1", instance_type="t3.medium").update(
        usd_per_hour=Decimal("0.04"))
    InstancePrice.objects.filter(region="us-east-1", instance_type="p3.2xlarge").delete()
    price_list.answer_us_east_1()

    call_command("prices_refresh", "--region", "us-east-1",
                 "--types", "g4dn.xlarge,p3.2xlarge,t3.medium")

    price_list.stubber.assert_no_pending_responses()
    out = capsys.readouterr().out
    assert "us-east-1 t3.medium on-demand: $0.040000 → $0.041600 per hour" in out
    assert "us-east-1 p3.2xlarge on-demand: new, $3.060000 per hour" in out
    assert "us-east-1 on-demand: 1 new, 1 changed, 1 unchanged." in out
    t3 = price_get(region="us-east-1", instance_type="t3.medium")
    assert t3.usd_per_hour == Decimal("0.0416")  # the on-demand rate, not the reserved one
    assert "AWS Price List API" in t3.source and str(t3.fetched_on) in t3.source
    p3 = price_get(region="us-east-1", instance_type="p3.2xlarge")  # found on the second page
    assert (p3.vcpu, p3.memory_gib, p3.gpu_count, p3.gpu_memory_gib) == (8, Decimal("61"), 1, 16)
    g4dn = price_get(region="us-east-1", instance_type="g4dn.xlarge")
    assert (g4dn.usd_per_hour, g4dn.gpu_model) == (Decimal("0.526"), "NVIDIA T4")


def test_it_reads_sizes_and_gpus_from_the_price_list_and_asks_us_east_1(
        db, price_list, settings):
    price_list.answer("g4dn.xlarge", "get_products_g4dn.xlarge.json", location="EU (Ireland)")
    account = cloud_account_default()
    account.region = "eu-west-1"

    products = aws.pricing_ec2_products(account, location=aws.pricing_location("eu-west-1"),
                                        instance_types=["g4dn.xlarge"])

    assert products == [{"instance_type": "g4dn.xlarge", "usd_per_hour": Decimal("0.5260000000"),
                         "vcpu": 4, "memory_gib": Decimal("16"), "gpu_count": 1,
                         "gpu_memory_gib": 16}]
    asked = price_list.accounts[0]
    assert (asked.region, asked.endpoint_url) == ("us-east-1", settings.AWS_ENDPOINT_URL)
    assert account.region == "eu-west-1"  # the account itself is left alone


def test_the_pricing_client_is_built_in_us_east_1_with_the_accounts_endpoint(
        db, fake_aws, monkeypatch):
    account = cloud_account_default()
    account.region = "eu-west-1"
    built = []
    real_client = aws._client

    def spy(account, service):
        client = real_client(account, service)  # the real construction, then a stub answers
        built.append((service, client.meta.region_name, client.meta.endpoint_url))
        stubber = Stubber(client)
        stubber.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []})
        stubber.activate()
        return client

    monkeypatch.setattr(aws, "_client", spy)

    assert aws.pricing_ec2_products(account, location="EU (Ireland)",
                                    instance_types=["t3.medium"]) == []
    assert built == [("pricing", "us-east-1", fake_aws)]


def test_it_says_so_when_aws_lists_no_price_for_a_type_and_leaves_it_alone(
        small_catalog, price_list, capsys):
    price_list.stubber.add_response(
        "get_products", {"FormatVersion": "aws_v1", "PriceList": []},
        get_products_params("t3.medium"))

    call_command("prices_refresh", "--region", "us-east-1", "--types", "t3.medium")

    assert ("us-east-1 t3.medium: AWS lists no on-demand Linux price; left unchanged."
            in capsys.readouterr().out)
    assert price_get(region="us-east-1", instance_type="t3.medium").usd_per_hour == Decimal(
        "0.0416")


def test_it_records_spot_prices_from_ec2_and_says_which_types_have_none(
        small_catalog, price_list, capsys):
    price_list.answer_us_east_1()

    call_command("prices_refresh", "--region", "us-east-1", "--spot")

    out = capsys.readouterr().out
    # moto quotes every type it offers at $0.00001; it offers no p3.2xlarge in us-east-1.
    spot = price_get(region="us-east-1", instance_type="t3.medium", market="spot")
    assert spot.usd_per_hour == Decimal("0.000010")
    assert (spot.vcpu, spot.memory_gib) == (2, Decimal("4"))  # taken from the on-demand row
    assert "DescribeSpotPriceHistory" in spot.source
    assert "us-east-1 p3.2xlarge: AWS reports no spot price; left unchanged." in out
    assert not InstancePrice.objects.filter(instance_type="p3.2xlarge", market="spot").exists()
    assert "us-east-1 spot: 2 new, 0 changed, 0 unchanged." in out


def test_it_changes_nothing_when_one_region_fails(small_catalog, price_list):
    InstancePrice.objects.filter(region="us-east-1", instance_type="t3.medium").update(
        usd_per_hour=Decimal("0.04"))
    before = catalog()
    price_list.answer("t3.medium", "get_products_t3.medium.json")
    price_list.stubber.add_client_error(
        "get_products", service_error_code="AccessDeniedException",
        service_message="User is not authorized to perform: pricing:GetProducts",
        http_status_code=400, expected_params=get_products_params("t3.medium",
                                                                  location="EU (Ireland)"))

    with pytest.raises(CommandError, match="Could not fetch prices for eu-west-1 from AWS, so "
                                           "nothing was changed: AccessDeniedException"):
        call_command("prices_refresh", "--region", "us-east-1", "--region", "eu-west-1",
                     "--types", "t3.medium")

    assert catalog() == before


def test_it_explains_missing_credentials_and_changes_nothing(small_catalog, monkeypatch):
    class NoCredentials:
        def get_products(self, **params):
            raise NoCredentialsError()

    monkeypatch.setattr(aws, "_client", lambda account, service: NoCredentials())
    before = catalog()

    with pytest.raises(CommandError, match="nothing was changed: No usable AWS credentials"):
        call_command("prices_refresh", "--region", "us-east-1")

    assert catalog() == before


def test_it_refuses_a_region_it_cannot_name_to_the_price_list_api(small_catalog):
    with pytest.raises(CommandError, match="does not know the AWS Price List name of region "
                                           "'mars-north-1'"):
        call_command("prices_refresh", "--region", "mars-north-1", "--types", "t3.medium")


def test_it_asks_for_types_when_the_catalog_has_none_for_the_region(small_catalog):
    with pytest.raises(CommandError, match="no prices for us-east-2 yet; name the instance "
                                           "types with --types"):
        call_command("prices_refresh", "--region", "us-east-2")
