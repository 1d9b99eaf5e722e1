"""Automatic networking: a VPC, public subnet and security group for a cloud account.

An account whose VPC, subnet and security group are all blank gets a network
Lens makes at the first launch: found again by its `lens:network` tag, so a
crash half-way is finished rather than repeated, and made under a PostgreSQL
advisory lock, so two launches at the same moment make one network. The lock
is a session lock, not a transaction: no database transaction stays open
across the AWS calls.

An account that names its own network is used as it is. Lens never replaces
a configured network: if its ids are gone from AWS the launch fails and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

from provisioning import aws
from provisioning.models import CloudAccount

log = logging.getLogger(__name__)

VPC_CIDR = "10.42.0.0/16"
SUBNET_CIDR = "10.42.0.0/20"
DEFAULT_PORTS = (22, 8888)
_LOCK_NAMESPACE = 0x4C454E53  # "LENS": pg_advisory_lock's first key, the account id the second


class NetworkMisconfigured(aws.AwsError):
    """The account names part of a network: Lens will neither guess the rest nor replace it."""


def _ports_text(ports: Iterable[int]) -> str:
    return ",".join(str(p) for p in sorted(set(ports)))


def _ports_of(text: str) -> set[int]:
    return {int(p) for p in text.split(",") if p.strip().isdigit()}


@contextmanager
def _account_lock(account_id: int) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, account_id])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, account_id])


def account_network_ensure(*, account: CloudAccount,
                           ports: Iterable[int] = DEFAULT_PORTS) -> CloudAccount:
    """The account with a VPC, subnet and security group, making them if it has none.

    `ports` are the template's; a network Lens made gets any of them it does
    not open yet. Returns the account re-read, with its ids.
    """
    ports = set(ports) or set(DEFAULT_PORTS)
    ids = (account.vpc_id, account.subnet_id, account.security_group_id)
    if all(ids):
        if account.network_managed and not ports <= _ports_of(account.network_open_ports):
            _ports_open(account=account, ports=ports)
        return account
    if any(ids):
        raise NetworkMisconfigured(
            f"Cloud account {account.name!r} names only part of a network (VPC "
            f"{account.vpc_id or '—'}, subnet {account.subnet_id or '—'}, security group "
            f"{account.security_group_id or '—'}). Set all three, or clear all three so "
            "Lens makes a network itself.")
    with _account_lock(account.pk):
        account.refresh_from_db()
        if not (account.vpc_id or account.subnet_id or account.security_group_id):
            _network_build(account=account, ports=ports)
        account.refresh_from_db()
    if account.network_managed and not ports <= _ports_of(account.network_open_ports):
        _ports_open(account=account, ports=ports)
    return account


def account_network_forget(*, account: CloudAccount) -> bool:
    """Clear the ids of a network Lens made, so the next launch makes it again.

    Only a Lens-made (managed) network, and only if the ids are still the ones
    the caller saw (compare-and-swap). False when there was nothing to forget.
    """
    if not account.network_managed:
        return False
    forgotten = CloudAccount.objects.filter(
        pk=account.pk, network_managed=True, vpc_id=account.vpc_id,
        subnet_id=account.subnet_id, security_group_id=account.security_group_id,
    ).update(vpc_id="", subnet_id="", security_group_id="", network_open_ports="")
    if forgotten:
        log.warning("cloud account %s: its network %s is gone from AWS; making it again",
                    account.pk, account.vpc_id)
    account.refresh_from_db()
    return True


def _network_build(*, account: CloudAccount, ports: set[int]) -> None:
    """Find or make each piece, then save the ids (only onto an account still blank)."""
    tags = {aws.TAG_NETWORK: account.name, "Name": f"lens-{account.name}"}
    found = aws.network_find(account, network=account.name)
    vpc_id = found.vpc_id or aws.vpc_create(account, cidr=VPC_CIDR, tags=tags)
    gateway_id = found.gateway_id or aws.internet_gateway_create(account, vpc_id=vpc_id,
                                                                  tags=tags)
    aws.default_route_ensure(account, vpc_id=vpc_id, gateway_id=gateway_id)
    subnet_id = found.subnet_id or aws.subnet_create(account, vpc_id=vpc_id, cidr=SUBNET_CIDR,
                                                     tags=tags)
    group_id = found.security_group_id or aws.security_group_create(
        account, vpc_id=vpc_id, name=f"lens-{account.name}-workspaces",
        description="Lens workspaces: SSH and Jupyter from the allowed network", tags=tags)
    opened = ports | set(DEFAULT_PORTS)
    aws.security_group_open(account, group_id=group_id, ports=sorted(opened),
                            cidr=settings.LENS_ACCESS_CIDR)
    saved = CloudAccount.objects.filter(
        pk=account.pk, vpc_id="", subnet_id="", security_group_id="",
    ).update(vpc_id=vpc_id, subnet_id=subnet_id, security_group_id=group_id,
             network_managed=True, network_open_ports=_ports_text(opened))
    log.info("cloud account %s: network %s / %s / %s (%s)", account.pk, vpc_id, subnet_id,
             group_id, "saved" if saved else "account changed meanwhile, not saved")


def _ports_open(*, account: CloudAccount, ports: set[int]) -> None:
    """Open a template's new ports in the security group Lens made."""
    opened = _ports_of(account.network_open_ports) | ports
    aws.security_group_open(account, group_id=account.security_group_id, ports=sorted(ports),
                            cidr=settings.LENS_ACCESS_CIDR)
    CloudAccount.objects.filter(pk=account.pk).update(network_open_ports=_ports_text(opened))
    account.network_open_ports = _ports_text(opened)
