"""Automatic networking: made once, found again by its tag, never a second VPC."""

import threading

import pytest
from django.db import connection

from provisioning import network, services, tasks
from provisioning.models import CloudAccount, Workspace
from provisioning.states import State
from tests.conftest import ec2, instances_tagged
from tests.factories import TemplateFactory


def lens_vpcs(endpoint):
    return ec2(endpoint).describe_vpcs(Filters=[{"Name": "tag-key",
                                                  "Values": ["lens:network"]}])["Vpcs"]


def resource_counts(endpoint) -> dict[str, int]:
    client = ec2(endpoint)
    return {
        "vpcs": len(client.describe_vpcs()["Vpcs"]),
        "subnets": len(client.describe_subnets()["Subnets"]),
        "groups": len(client.describe_security_groups()["SecurityGroups"]),
        "gateways": len(client.describe_internet_gateways()["InternetGateways"]),
    }


@pytest.fixture
def account(db, fake_aws):
    return services.cloud_account_default()


def ingress(endpoint, group_id) -> dict[int, list[str]]:
    [group] = ec2(endpoint).describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return {p["FromPort"]: [r["CidrIp"] for r in p["IpRanges"]] for p in group["IpPermissions"]}


def test_an_account_without_a_network_gets_a_public_subnet_and_a_narrow_security_group(
        account, fake_aws, settings):
    settings.LENS_ACCESS_CIDR = "203.0.113.0/24"

    account = network.account_network_ensure(account=account)

    client = ec2(fake_aws)
    [vpc] = lens_vpcs(fake_aws)
    assert vpc["VpcId"] == account.vpc_id and vpc["CidrBlock"] == "10.42.0.0/16"
    assert {t["Key"]: t["Value"] for t in vpc["Tags"]}["lens:network"] == account.name
    [subnet] = client.describe_subnets(SubnetIds=[account.subnet_id])["Subnets"]
    assert subnet["VpcId"] == account.vpc_id and subnet["MapPublicIpOnLaunch"] is True
    [gateway] = client.describe_internet_gateways(Filters=[
        {"Name": "attachment.vpc-id", "Values": [account.vpc_id]}])["InternetGateways"]
    [main] = client.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [account.vpc_id]},
        {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    assert any(r.get("GatewayId") == gateway["InternetGatewayId"]
               and r["DestinationCidrBlock"] == "0.0.0.0/0" for r in main["Routes"])
    assert ingress(fake_aws, account.security_group_id) == {22: ["203.0.113.0/24"],
                                                            8888: ["203.0.113.0/24"]}
    assert account.network_managed and account.network_open_ports == "22,8888"


def test_a_second_call_creates_nothing(account, fake_aws):
    network.account_network_ensure(account=account)
    before = resource_counts(fake_aws)

    again = network.account_network_ensure(account=CloudAccount.objects.get(pk=account.pk))

    assert resource_counts(fake_aws) == before
    assert again.vpc_id == CloudAccount.objects.get(pk=account.pk).vpc_id


def test_a_crash_before_the_ids_were_saved_is_finished_from_the_tagged_network(
        account, fake_aws):
    made = network.account_network_ensure(account=account)
    ids = (made.vpc_id, made.subnet_id, made.security_group_id)
    before = resource_counts(fake_aws)
    CloudAccount.objects.filter(pk=account.pk).update(vpc_id="", subnet_id="",
                                                      security_group_id="")

    found = network.account_network_ensure(account=CloudAccount.objects.get(pk=account.pk))

    assert (found.vpc_id, found.subnet_id, found.security_group_id) == ids
    assert resource_counts(fake_aws) == before


@pytest.mark.django_db(transaction=True)
def test_two_launches_at_the_same_moment_make_one_network(fake_aws):
    account = services.cloud_account_default()
    barrier = threading.Barrier(2)
    results, errors = [], []

    def ensure():
        try:
            barrier.wait()
            results.append(network.account_network_ensure(
                account=CloudAccount.objects.get(pk=account.pk)).vpc_id)
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ensure) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(lens_vpcs(fake_aws)) == 1
    assert results[0] == results[1] == CloudAccount.objects.get(pk=account.pk).vpc_id


@pytest.fixture
def requested(student, approved, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return services.workspace_launch(membership=student, template_slug="ml-cpu-student",
                                         name="hw1", actor=student.user)


def test_the_launch_makes_the_network_and_puts_the_machine_in_it(requested, fake_aws):
    tasks.workspace_launch_task.delay(requested.pk)

    requested.refresh_from_db()
    account = requested.cloud_account
    account.refresh_from_db()
    [instance] = instances_tagged(fake_aws, requested.pk)
    assert requested.state == State.RUNNING
    assert instance["SubnetId"] == account.subnet_id and instance["VpcId"] == account.vpc_id
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [account.security_group_id]
    assert instance.get("PublicIpAddress")


def test_a_configured_subnet_that_is_gone_fails_the_launch_instead_of_making_another(
        requested, fake_aws):
    client = ec2(fake_aws)
    vpc_id = client.describe_vpcs()["Vpcs"][0]["VpcId"]
    group_id = client.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    CloudAccount.objects.filter(pk=requested.cloud_account_id).update(
        vpc_id=vpc_id, subnet_id="subnet-0123456789abcdef0", security_group_id=group_id)
    before = resource_counts(fake_aws)

    tasks.workspace_launch_task.delay(requested.pk)

    requested.refresh_from_db()
    assert requested.state == State.FAILED
    assert "subnet-0123456789abcdef0" in requested.failure_reason
    assert "clear its VPC, subnet and security group" in requested.failure_reason
    assert resource_counts(fake_aws) == before and lens_vpcs(fake_aws) == []


def test_an_account_naming_only_part_of_a_network_fails_the_launch_and_says_why(
        requested, fake_aws):
    CloudAccount.objects.filter(pk=requested.cloud_account_id).update(vpc_id="vpc-12345678")

    tasks.workspace_launch_task.delay(requested.pk)

    requested.refresh_from_db()
    assert requested.state == State.FAILED
    assert "only part of a network" in requested.failure_reason
    assert lens_vpcs(fake_aws) == []


def test_a_template_with_another_port_gets_it_opened_in_the_lens_security_group(
        student, course, approved, fake_aws, django_capture_on_commit_callbacks):
    from tests.factories import ApprovedTemplateFactory

    web = TemplateFactory(slug="web-dev", ports="22,8888,8080")
    ApprovedTemplateFactory(course=course, template=web)
    with django_capture_on_commit_callbacks(execute=True):
        services.workspace_launch(membership=student, template_slug="ml-cpu-student",
                                  name="hw1", actor=student.user)
        services.workspace_launch(membership=student, template_slug="web-dev",
                                  name="site", actor=student.user)

    account = CloudAccount.objects.get()
    assert set(ingress(fake_aws, account.security_group_id)) == {22, 8080, 8888}
    assert account.network_open_ports == "22,8080,8888"
    assert len(lens_vpcs(fake_aws)) == 1
    assert Workspace.objects.filter(state=State.RUNNING).count() == 2
