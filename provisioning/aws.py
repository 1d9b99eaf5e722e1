"""The AWS adapter: the only module in Lens that imports boto3.

One function per operation. Clients are built lazily per cloud account, with
timeouts and botocore's adaptive retries; failures come out as Lens's own
exceptions so callers never see botocore types.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from provisioning import ratelimit

if TYPE_CHECKING:
    from provisioning.models import CloudAccount

TAG_WORKSPACE = "lens:workspace"
TAG_COURSE = "lens:course"
TAG_MEMBER = "lens:member"
TAG_NETWORK = "lens:network"
TAG_ROLE = "lens:role"  # on volumes and snapshots: "home", "backup"
TAG_RESET = "lens:reset"  # on a reset's backup snapshot: the WorkspaceReset id
TAG_DELETE_AFTER = "lens:delete-after"  # on backups: ISO date after which Lens deletes it

_THROTTLE_CODES = {"RequestLimitExceeded", "Throttling", "ThrottlingException",
                   "TooManyRequestsException"}
_CAPACITY_CODES = {"InsufficientInstanceCapacity", "InstanceLimitExceeded",
                   "MaxSpotInstanceCountExceeded", "VcpuLimitExceeded"}
_NOT_FOUND_CODES = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}
# Errors about some of the instances in a batch: AWS refuses the whole call, so the
# batch is split to find the ones it means.
_INSTANCE_CODES = _NOT_FOUND_CODES | {"IncorrectInstanceState", "IncorrectState",
                                      "UnsupportedOperation", "OperationNotPermitted"}
# StopInstances and TerminateInstances take up to this many ids a call.
BATCH_MAX = 1000
_NETWORK_NOT_FOUND_CODES = {"InvalidSubnetID.NotFound", "InvalidGroup.NotFound",
                            "InvalidSecurityGroupID.NotFound", "InvalidVpcID.NotFound"}
_LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


class AwsError(Exception):
    """AWS refused the request; the message is fit to show a user."""

    transient = False


class Throttled(AwsError):
    transient = True


class AwsUnavailable(AwsError):
    """A 5xx or a network failure: worth trying again later."""

    transient = True


class CapacityError(AwsError):
    pass


class InstanceNotFound(AwsError):
    pass


class NetworkNotFound(AwsError):
    """A subnet, security group or VPC the cloud account names is not in AWS."""
class HibernationRefused(AwsError):
    """AWS would not hibernate this instance (not configured, not supported, not ready)."""


class ResourceNotFound(AwsError):
    """A volume or snapshot that does not exist (any more)."""


@dataclass(frozen=True)
class Instance:
    id: str
    state: str  # EC2's name: pending, running, stopping, stopped, shutting-down, terminated
    instance_type: str
    public_ip: str | None
    private_ip: str | None
    public_dns: str
    launch_time: datetime | None
    state_reason: str
    tags: dict[str, str]
    key_name: str = ""
    availability_zone: str = ""
    root_volume_id: str = ""
    lifecycle: str = ""  # "spot" for spot instances, "" for on-demand

    @classmethod
    def from_api(cls, data: dict) -> Instance:
        return cls(
            id=data["InstanceId"],
            state=data["State"]["Name"],
            instance_type=data.get("InstanceType", ""),
            public_ip=data.get("PublicIpAddress"),
            private_ip=data.get("PrivateIpAddress"),
            public_dns=data.get("PublicDnsName", "") or "",
            launch_time=data.get("LaunchTime"),
            state_reason=(data.get("StateReason") or {}).get("Message", ""),
            tags={t["Key"]: t["Value"] for t in data.get("Tags", [])},
            key_name=data.get("KeyName", "") or "",
            availability_zone=(data.get("Placement") or {}).get("AvailabilityZone", ""),
            root_volume_id=_root_volume_id(data),
            lifecycle=data.get("InstanceLifecycle", "") or "",
        )


def _root_volume_id(data: dict) -> str:
    """The boot volume: the mapping on the root device name, else the first one."""
    mappings = [m for m in data.get("BlockDeviceMappings", []) if m.get("Ebs")]
    root = next((m for m in mappings if m.get("DeviceName") == data.get("RootDeviceName")),
                mappings[0] if mappings else None)
    return root["Ebs"].get("VolumeId", "") if root else ""


_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()
_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"mode": "adaptive", "max_attempts": 4},
)


def _client(account: CloudAccount, service: str):
    key = (service, account.region, account.endpoint_url, account.role_arn)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            session = _session(account)
            client = session.client(service, region_name=account.region, config=_CONFIG,
                                    endpoint_url=account.endpoint_url or None)
            _clients[key] = client
        return client


def _session(account: CloudAccount) -> boto3.session.Session:
    if not account.role_arn:
        return boto3.session.Session()
    sts = boto3.session.Session().client("sts", config=_CONFIG,
                                         endpoint_url=account.endpoint_url or None)
    creds = sts.assume_role(RoleArn=account.role_arn, RoleSessionName="lens")["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def clients_reset() -> None:
    """Forget cached clients (tests that restart the fake AWS endpoint)."""
    with _clients_lock:
        _clients.clear()


def _translate(exc: Exception) -> AwsError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", str(exc))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = f"{code}: {message}" if code else message
        if code in _THROTTLE_CODES:
            return Throttled(text)
        if code in _CAPACITY_CODES:
            return CapacityError(text)
        if code in _NOT_FOUND_CODES:
            return InstanceNotFound(text)
        if code in _NETWORK_NOT_FOUND_CODES:
            return NetworkNotFound(text)
        if status >= 500:
            return AwsUnavailable(text)
        return AwsError(text)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AwsError(f"No usable AWS credentials: {exc}. Configure credentials for this "
                        "process or give the cloud account a role to assume.")
    if isinstance(exc, EndpointConnectionError | BotoCoreError):
        return AwsUnavailable(f"Could not reach AWS: {exc}")
    raise exc


def image_resolve(account: CloudAccount, image: str) -> str:
    """An AMI id as is, or the AMI an SSM parameter (/aws/service/…) names."""
    if image.startswith("ami-"):
        return image
    try:
        response = _client(account, "ssm").get_parameter(Name=image)
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc) from exc
    return response["Parameter"]["Value"]


def instance_find_for_workspace(account: CloudAccount, *, workspace_id: int) -> Instance | None:
    """The live instance tagged with this workspace, if one exists.

    Asked before every RunInstances so a task that runs twice, or whose
    ClientToken AWS did not honour, never makes a second machine.
    """
    try:
        response = _client(account, "ec2").describe_instances(Filters=[
            {"Name": f"tag:{TAG_WORKSPACE}", "Values": [str(workspace_id)]},
            {"Name": "instance-state-name", "Values": _LIVE_STATES},
        ])
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc) from exc
    found = [Instance.from_api(i) for r in response["Reservations"] for i in r["Instances"]]
    found.sort(key=lambda i: (i.launch_time is None, i.launch_time))
    return found[0] if found else None


def instance_run(
    account: CloudAccount,
    *,
    client_token: str,
    image_id: str,
    instance_type: str,
    tags: dict[str, str],
    user_data: str = "",
    root_volume_gib: int | None = None,
    key_name: str = "",
    availability_zone: str = "",
    hibernation: bool = False,
    spot: bool = False,
) -> Instance:
    """Run one instance. `availability_zone` puts it next to an existing home volume;
    `hibernation` configures it so it can hibernate (AWS needs an encrypted root);
    `spot` asks for a persistent spot request that stops, not terminates, on interruption.
    """
    params: dict = {
        "ImageId": image_id,
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": client_token,
        "TagSpecifications": [
            {"ResourceType": "instance",
             "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]},
        ],
    }
    if user_data:
        params["UserData"] = user_data
    if key_name:
        params["KeyName"] = key_name
    if account.subnet_id:
        params["SubnetId"] = account.subnet_id
    if account.security_group_id:
        params["SecurityGroupIds"] = [account.security_group_id]
    if root_volume_gib:
        params["BlockDeviceMappings"] = [
            {"DeviceName": "/dev/xvda",
             "Ebs": {"VolumeSize": root_volume_gib, "VolumeType": "gp3",
                     "DeleteOnTermination": True, **({"Encrypted": True} if hibernation else {})}},
        ]
    if availability_zone:
        params["Placement"] = {"AvailabilityZone": availability_zone}
    if hibernation:
        params["HibernationOptions"] = {"Configured": True}
    if spot:
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"}}
    try:
        # Keyed by the client token, so a task re-queued for its turn comes back to the same slot.
        response = _ec2_limited(account, "run_instances", bucket="run",
                                holder=f"run:{client_token}", **params)
    except NetworkNotFound as error:
        raise NetworkNotFound(
            f"The network of cloud account {account.name!r} is not in AWS ({error}). "
            "Fix its subnet and security group, or clear its VPC, subnet and security "
            "group so Lens makes a network itself.") from error
    return Instance.from_api(response["Instances"][0])


def instance_get(account: CloudAccount, instance_id: str) -> Instance:
    try:
        response = _client(account, "ec2").describe_instances(InstanceIds=[instance_id])
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc) from exc
    for reservation in response["Reservations"]:
        for data in reservation["Instances"]:
            return Instance.from_api(data)
    raise InstanceNotFound(f"Instance {instance_id} does not exist.")


@dataclass
class BatchResult:
    """What a batched stop or terminate did: ids AWS accepted, ids it refused and why,
    and ids not yet sent because Lens's bucket said wait (`retry_after` seconds)."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, AwsError] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)
    retry_after: float = 0.0
    calls: int = 0


def instances_stop(account: CloudAccount, instance_ids: list[str], *,
                   hibernate: bool = False) -> BatchResult:
    """Stop instances, up to 1,000 a call, paced by EC2's 20-instances-a-second bucket.

    With `hibernate`, each instance is asked on its own, and an instance AWS will
    not hibernate raises HibernationRefused, so the caller can fall back to a stop.
    """
    if hibernate:
        return _instances_hibernate(account, instance_ids)
    return _instances_batch(account, instance_ids, operation="stop_instances", bucket="stop")


# What StopInstances(Hibernate=True) answers when this instance cannot hibernate.
_HIBERNATION_REFUSED_CODES = {"UnsupportedHibernationConfiguration", "UnsupportedOperation",
                              "InvalidParameterCombination", "IncorrectInstanceState"}


def _instances_hibernate(account: CloudAccount, instance_ids: list[str]) -> BatchResult:
    result = BatchResult()
    for instance_id in dict.fromkeys(instance_ids):
        try:
            _ec2_limited(account, "stop_instances", bucket="stop",
                         InstanceIds=[instance_id], Hibernate=True)
        except AwsError as error:
            if _error_code(error.__cause__) in _HIBERNATION_REFUSED_CODES:
                raise HibernationRefused(str(error)) from error.__cause__
            raise
        result.calls += 1
        result.done.append(instance_id)
    return result


def instances_terminate(account: CloudAccount, instance_ids: list[str]) -> BatchResult:
    """Terminate instances, up to 1,000 a call, paced like stops."""
    return _instances_batch(account, instance_ids, operation="terminate_instances",
                            bucket="terminate")


def instances_start(account: CloudAccount, instance_ids: list[str]) -> None:
    """Start instances; shares RunInstances' bucket (5 deep, 2 a second)."""
    _ec2_limited(account, "start_instances", bucket="run", cost=len(instance_ids),
                 holder=f"start:{_digest(instance_ids)}", InstanceIds=instance_ids)


def _scope(account: CloudAccount) -> str:
    """Whose limits a call counts against: EC2 throttles per AWS account and region."""
    arn = account.role_arn.split(":")
    owner = arn[4] if len(arn) > 4 and arn[4] else (account.endpoint_url or "default")
    return f"{owner}:{account.region}"


def _digest(ids: list[str]) -> str:
    return hashlib.sha1(",".join(sorted(ids)).encode()).hexdigest()[:16]


def _ec2_limited(account: CloudAccount, operation: str, *, bucket: str, cost: int = 1,
                 holder: str = "", **params) -> dict:
    """One EC2 call, once Lens's copy of its bucket allows it.

    Raises ratelimit.RateLimited when the wait is too long to sleep off. When
    AWS throttles anyway, the bucket is emptied and the error is Throttled.
    """
    ratelimit.buckets().take(scope=_scope(account), name=bucket, cost=cost, holder=holder)
    try:
        return getattr(_client(account, "ec2"), operation)(**params)
    except (ClientError, BotoCoreError) as exc:
        raise _throttle_noted(account, bucket, exc) from exc


def _throttle_noted(account: CloudAccount, bucket: str, exc: Exception) -> AwsError:
    error = _translate(exc)
    if isinstance(error, Throttled):
        ratelimit.buckets().drain(scope=_scope(account), name=bucket)
    return error


def _instances_batch(account: CloudAccount, instance_ids: list[str], *, operation: str,
                     bucket: str, **params) -> BatchResult:
    ids = list(dict.fromkeys(instance_ids))
    result = BatchResult()
    for start in range(0, len(ids), BATCH_MAX):
        chunk = ids[start:start + BATCH_MAX]
        try:
            # One charge per chunk: the halves of a refused chunk are the same instances.
            ratelimit.buckets().take(scope=_scope(account), name=bucket, cost=len(chunk),
                                     holder=f"{operation}:{_digest(chunk)}")
        except ratelimit.RateLimited as limited:
            result.deferred.extend(chunk)
            result.retry_after = result.retry_after or limited.retry_after
            continue
        _batch_send(account, chunk, operation=operation, bucket=bucket, params=params,
                    result=result)
    return result


def _batch_send(account: CloudAccount, chunk: list[str], *, operation: str, bucket: str,
                params: dict, result: BatchResult) -> None:
    """Send one batch; when AWS refuses it over some instance, halve it until that one is alone."""
    result.calls += 1
    try:
        getattr(_client(account, "ec2"), operation)(InstanceIds=chunk, **params)
    except (ClientError, BotoCoreError) as exc:
        error = _throttle_noted(account, bucket, exc)
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        if code not in _INSTANCE_CODES:
            raise error from exc
        if len(chunk) == 1:
            result.failed[chunk[0]] = error
            return
        half = len(chunk) // 2
        for part in (chunk[:half], chunk[half:]):
            _batch_send(account, part, operation=operation, bucket=bucket, params=params,
                        result=result)
        return
    result.done.extend(chunk)


# --- key pairs and network --------------------------------------------------


# EC2 calls that change something share the "mutate" bucket (5/s); describes do not.
_MUTATING = ("create_", "attach_", "delete_", "modify_", "authorize_", "import_")


def _mutate_paced(account: CloudAccount, operation: str) -> None:
    """Take a token from the mutate bucket before a mutating call (may raise RateLimited)."""
    if operation.startswith(_MUTATING):
        ratelimit.buckets().take(scope=_scope(account), name="mutate")


def _call(account: CloudAccount, operation: str, **params) -> dict:
    _mutate_paced(account, operation)
    try:
        return getattr(_client(account, "ec2"), operation)(**params)
    except (ClientError, BotoCoreError) as exc:
        raise _throttle_noted(account, "mutate", exc) from exc


def _error_code(exc: Exception) -> str:
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


# --- volumes and snapshots ---------------------------------------------------

_VOLUME_NOT_FOUND_CODES = {"InvalidVolume.NotFound", "InvalidSnapshot.NotFound"}


@dataclass(frozen=True)
class Volume:
    id: str
    state: str  # creating, available, in-use, deleting, deleted, error
    availability_zone: str
    size_gib: int
    attached_to: str  # instance id, or ""
    attachment_state: str  # attaching, attached, detaching, or ""
    tags: dict[str, str]

    @classmethod
    def from_api(cls, data: dict) -> Volume:
        attachment = next(iter(data.get("Attachments") or []), {})
        return cls(id=data["VolumeId"], state=data["State"],
                   availability_zone=data["AvailabilityZone"], size_gib=data.get("Size", 0),
                   attached_to=attachment.get("InstanceId", ""),
                   attachment_state=attachment.get("State", ""),
                   tags={t["Key"]: t["Value"] for t in data.get("Tags", [])})


@dataclass(frozen=True)
class Snapshot:
    id: str
    state: str  # pending, completed, error
    volume_id: str
    tags: dict[str, str]

    @classmethod
    def from_api(cls, data: dict) -> Snapshot:
        return cls(id=data["SnapshotId"], state=data["State"],
                   volume_id=data.get("VolumeId", ""),
                   tags={t["Key"]: t["Value"] for t in data.get("Tags", [])})


def _ec2_call(account: CloudAccount, operation: str, **params) -> dict:
    _mutate_paced(account, operation)
    try:
        return getattr(_client(account, "ec2"), operation)(**params)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in _VOLUME_NOT_FOUND_CODES:
            raise ResourceNotFound(str(_translate(exc))) from exc
        raise _throttle_noted(account, "mutate", exc) from exc
    except BotoCoreError as exc:
        raise _translate(exc) from exc


def _tag_spec(resource: str, tags: dict[str, str]) -> list[dict]:
    return [{"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def key_pair_ensure(account: CloudAccount, *, name: str, public_key: str,
                    tags: dict[str, str]) -> None:
    """Import a public key under `name` unless the account already has it.

    Names are per person and per key, so "already there" means "this key";
    a concurrent import of the same name is as good as our own.
    """
    ec2 = _client(account, "ec2")
    try:
        ec2.describe_key_pairs(KeyNames=[name])
        return
    except ClientError as exc:
        if _error_code(exc) != "InvalidKeyPair.NotFound":
            raise _translate(exc) from exc
    except BotoCoreError as exc:
        raise _translate(exc) from exc
    try:
        _mutate_paced(account, "import_key_pair")
        ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public_key.encode(),
                            TagSpecifications=_tag_spec("key-pair", tags))
    except ClientError as exc:
        if _error_code(exc) != "InvalidKeyPair.Duplicate":
            raise _translate(exc) from exc
    except BotoCoreError as exc:
        raise _translate(exc) from exc


@dataclass(frozen=True)
class NetworkFound:
    """What of a Lens network (found by its tag) exists in AWS; empty strings for the rest."""

    vpc_id: str = ""
    gateway_id: str = ""
    subnet_id: str = ""
    security_group_id: str = ""


def network_find(account: CloudAccount, *, network: str) -> NetworkFound:
    """The VPC tagged lens:network=`network` and its tagged gateway, subnet and group."""
    tag = [{"Name": f"tag:{TAG_NETWORK}", "Values": [network]}]
    vpcs = sorted(v["VpcId"] for v in _call(account, "describe_vpcs", Filters=tag)["Vpcs"])
    if not vpcs:
        return NetworkFound()
    vpc_id = vpcs[0]
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}, *tag]
    gateways = _call(account, "describe_internet_gateways",
                     Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}])
    subnets = _call(account, "describe_subnets", Filters=in_vpc)["Subnets"]
    groups = _call(account, "describe_security_groups", Filters=in_vpc)["SecurityGroups"]
    return NetworkFound(
        vpc_id=vpc_id,
        gateway_id=min((g["InternetGatewayId"] for g in gateways["InternetGateways"]),
                       default=""),
        subnet_id=min((s["SubnetId"] for s in subnets), default=""),
        security_group_id=min((g["GroupId"] for g in groups), default=""),
    )


def vpc_create(account: CloudAccount, *, cidr: str, tags: dict[str, str]) -> str:
    """A VPC with DNS hostnames on, so instances get a public DNS name."""
    vpc_id = _call(account, "create_vpc", CidrBlock=cidr,
                   TagSpecifications=_tag_spec("vpc", tags))["Vpc"]["VpcId"]
    _call(account, "modify_vpc_attribute", VpcId=vpc_id, EnableDnsSupport={"Value": True})
    _call(account, "modify_vpc_attribute", VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    return vpc_id


def internet_gateway_create(account: CloudAccount, *, vpc_id: str,
                            tags: dict[str, str]) -> str:
    """An internet gateway attached to the VPC, and the VPC's default route through it."""
    gateway_id = _call(account, "create_internet_gateway",
                       TagSpecifications=_tag_spec("internet-gateway", tags)
                       )["InternetGateway"]["InternetGatewayId"]
    _call(account, "attach_internet_gateway", InternetGatewayId=gateway_id, VpcId=vpc_id)
    return gateway_id


def default_route_ensure(account: CloudAccount, *, vpc_id: str, gateway_id: str) -> None:
    """Route 0.0.0.0/0 of the VPC's main route table through the gateway."""
    tables = _call(account, "describe_route_tables", Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    for table in tables:
        if any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in table.get("Routes", [])):
            continue
        try:
            _mutate_paced(account, "create_route")
            _client(account, "ec2").create_route(RouteTableId=table["RouteTableId"],
                                                 DestinationCidrBlock="0.0.0.0/0",
                                                 GatewayId=gateway_id)
        except ClientError as exc:
            if _error_code(exc) != "RouteAlreadyExists":
                raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc


def subnet_create(account: CloudAccount, *, vpc_id: str, cidr: str,
                  tags: dict[str, str]) -> str:
    """A public subnet: instances in it get a public address at launch."""
    subnet_id = _call(account, "create_subnet", VpcId=vpc_id, CidrBlock=cidr,
                      TagSpecifications=_tag_spec("subnet", tags))["Subnet"]["SubnetId"]
    _call(account, "modify_subnet_attribute", SubnetId=subnet_id,
          MapPublicIpOnLaunch={"Value": True})
    return subnet_id


def security_group_create(account: CloudAccount, *, vpc_id: str, name: str, description: str,
                          tags: dict[str, str]) -> str:
    return _call(account, "create_security_group", VpcId=vpc_id, GroupName=name,
                 Description=description,
                 TagSpecifications=_tag_spec("security-group", tags))["GroupId"]


def security_group_open(account: CloudAccount, *, group_id: str, ports: list[int],
                        cidr: str) -> None:
    """Allow TCP `ports` from `cidr`; rules already there are fine."""
    ec2 = _client(account, "ec2")
    for port in ports:
        try:
            _mutate_paced(account, "authorize_security_group_ingress")
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[{
                "IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                "IpRanges": [{"CidrIp": cidr, "Description": "Lens workspace access"}]}])
        except ClientError as exc:
            if _error_code(exc) != "InvalidPermission.Duplicate":
                raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc


def _tag_filters(tags: dict[str, str]) -> list[dict]:
    return [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]


def volume_find(account: CloudAccount, *, tags: dict[str, str]) -> Volume | None:
    """The oldest live volume carrying all these tags (so a retried create adopts it)."""
    response = _ec2_call(account, "describe_volumes", Filters=[
        *_tag_filters(tags),
        {"Name": "status", "Values": ["creating", "available", "in-use"]}])
    found = sorted(response.get("Volumes", []), key=lambda v: v.get("CreateTime") or 0)
    return Volume.from_api(found[0]) if found else None


def volume_get(account: CloudAccount, volume_id: str) -> Volume:
    response = _ec2_call(account, "describe_volumes", VolumeIds=[volume_id])
    for data in response.get("Volumes", []):
        return Volume.from_api(data)
    raise ResourceNotFound(f"Volume {volume_id} does not exist.")


def volume_create(account: CloudAccount, *, availability_zone: str, size_gib: int,
                  tags: dict[str, str]) -> Volume:
    """A gp3 volume of its own (not part of an instance), so it outlives any instance."""
    response = _ec2_call(account, "create_volume", AvailabilityZone=availability_zone,
                         Size=size_gib, VolumeType="gp3", Encrypted=True,
                         TagSpecifications=_tag_spec("volume", tags))
    return Volume.from_api(response)


def volume_attach(account: CloudAccount, *, volume_id: str, instance_id: str,
                  device: str = "/dev/sdf") -> None:
    _ec2_call(account, "attach_volume", VolumeId=volume_id, InstanceId=instance_id,
              Device=device)


def volume_delete(account: CloudAccount, volume_id: str) -> None:
    """Delete a volume; one that is already gone is not an error."""
    try:
        _ec2_call(account, "delete_volume", VolumeId=volume_id)
    except ResourceNotFound:
        return


def snapshot_find(account: CloudAccount, *, tags: dict[str, str]) -> Snapshot | None:
    response = _ec2_call(account, "describe_snapshots", OwnerIds=["self"],
                         Filters=_tag_filters(tags))
    found = response.get("Snapshots", [])
    return Snapshot.from_api(found[0]) if found else None


def snapshot_get(account: CloudAccount, snapshot_id: str) -> Snapshot:
    response = _ec2_call(account, "describe_snapshots", SnapshotIds=[snapshot_id])
    for data in response.get("Snapshots", []):
        return Snapshot.from_api(data)
    raise ResourceNotFound(f"Snapshot {snapshot_id} does not exist.")


def snapshot_create(account: CloudAccount, *, volume_id: str, description: str,
                    tags: dict[str, str]) -> Snapshot:
    response = _ec2_call(account, "create_snapshot", VolumeId=volume_id,
                         Description=description[:255],
                         TagSpecifications=_tag_spec("snapshot", tags))
    return Snapshot.from_api(response)


def snapshot_delete(account: CloudAccount, snapshot_id: str) -> None:
    """Delete a snapshot; one that is already gone is not an error."""
    try:
        _ec2_call(account, "delete_snapshot", SnapshotId=snapshot_id)
    except ResourceNotFound:
        return


# --- prices ------------------------------------------------------------------

PRICE_LIST_REGION = "us-east-1"  # the Price List query API answers here, whatever the account's
# The Price List API names regions by location, and keeps the old "EU (…)" names.
PRICE_LIST_LOCATIONS = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-central-1": "EU (Frankfurt)",
}
_PRICE_LIST_FILTERS = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
    "licenseModel": "No License required",
}


def pricing_location(region: str) -> str:
    """The Price List API's name for a region code."""
    try:
        return PRICE_LIST_LOCATIONS[region]
    except KeyError:
        known = ", ".join(sorted(PRICE_LIST_LOCATIONS))
        raise ValueError(f"Lens does not know the AWS Price List name of region {region!r} "
                         f"(it knows {known}).") from None


def pricing_ec2_products(account: CloudAccount, *, location: str,
                         instance_types: list[str]) -> list[dict]:
    """On-demand Linux prices and sizes of these types at one Price List location.

    The account gives credentials and endpoint only: the Price List API lives in
    us-east-1. One query per type keeps answers small and exact. Types AWS does
    not list are absent from the result; should AWS list two rates for one type,
    the higher wins, so an estimate never undershoots.
    """
    pricing_account = copy.copy(account)
    pricing_account.region = PRICE_LIST_REGION
    found: dict[str, dict] = {}
    for instance_type in dict.fromkeys(instance_types):
        filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value}
                   for field, value in {"location": location, "instanceType": instance_type,
                                        **_PRICE_LIST_FILTERS}.items()]
        params: dict = {"ServiceCode": "AmazonEC2", "Filters": filters,
                        "FormatVersion": "aws_v1", "MaxResults": 100}
        while True:
            try:
                response = _client(pricing_account, "pricing").get_products(**params)
            except ClientError as exc:
                raise _pricing_error(exc, endpoint_url=account.endpoint_url) from exc
            except BotoCoreError as exc:
                raise _translate(exc) from exc
            for text in response.get("PriceList", []):
                product = _price_list_product(text)
                if product is None or product["instance_type"] != instance_type:
                    continue
                if (instance_type not in found
                        or product["usd_per_hour"] > found[instance_type]["usd_per_hour"]):
                    found[instance_type] = product
            if not response.get("NextToken"):
                break
            params["NextToken"] = response["NextToken"]
    return list(found.values())


def _pricing_error(exc: ClientError, *, endpoint_url: str) -> AwsError:
    """Say plainly when the endpoint is no Price List API at all (moto has none)."""
    error = _translate(exc)
    code = exc.response.get("Error", {}).get("Code", "")
    if code.isdigit():  # an HTTP status, not an AWS error code: the body was no AWS answer
        return type(error)(f"{endpoint_url or 'AWS'} did not answer as the Price List API "
                           f"does (HTTP {code}).")
    return error


def _price_list_product(text: str) -> dict | None:
    """One PriceList entry as a catalog row, or None when it is not a usable hourly rate."""
    try:
        data = json.loads(text)
        attributes = data["product"]["attributes"]
        if attributes.get("marketoption", "OnDemand") != "OnDemand":
            return None  # e.g. Capacity Blocks, listed at $0.00
        rates = [Decimal(dimension["pricePerUnit"]["USD"])
                 for term in data.get("terms", {}).get("OnDemand", {}).values()
                 for dimension in term.get("priceDimensions", {}).values()
                 if dimension.get("unit") == "Hrs" and "USD" in dimension.get("pricePerUnit", {})]
        rates = [rate for rate in rates if rate > 0]
        if not rates:
            return None
        product = {
            "instance_type": attributes["instanceType"],
            "usd_per_hour": max(rates),
            "vcpu": int(attributes["vcpu"]),
            "memory_gib": _gib(attributes["memory"]),
            "gpu_count": int(_gib(attributes.get("gpu")) or 0),
        }
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise AwsError(f"The Price List API sent a product Lens cannot read ({exc!r}).") from exc
    if product["memory_gib"] is None:
        raise AwsError(f"The Price List API gave no memory size for {product['instance_type']}.")
    # gpuMemory is the whole instance's ("320 GB HBM2" on 8 GPUs); the catalog keeps it per GPU.
    # The Price List names no GPU model, so the catalog's own is kept.
    gpu_memory = _gib(attributes.get("gpuMemory"))
    if product["gpu_count"] and gpu_memory:
        product["gpu_memory_gib"] = int(gpu_memory / product["gpu_count"])
    return product


def _gib(text: str | None) -> Decimal | None:
    """Read "16 GiB", "1,952 GiB", "24 GB" or "1" as a number; "NA" or nothing as None."""
    if not text:
        return None
    number = text.split()[0].replace(",", "")
    try:
        return Decimal(number)
    except InvalidOperation:
        return None


def spot_prices_latest(account: CloudAccount, *, instance_types: list[str]) -> dict[str, Decimal]:
    """The current Linux spot price of each type in the account's region.

    Spot prices differ by availability zone; the highest zone's latest price is
    taken so an estimate never undershoots. Types without spot history are absent.
    """
    if not instance_types:
        return {}
    latest: dict[tuple[str, str], tuple[datetime, Decimal]] = {}
    params: dict = {"InstanceTypes": list(dict.fromkeys(instance_types)),
                    "ProductDescriptions": ["Linux/UNIX"],
                    "StartTime": datetime.now(UTC), "MaxResults": 1000}
    while True:
        try:
            response = _client(account, "ec2").describe_spot_price_history(**params)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc
        for record in response.get("SpotPriceHistory", []):
            price = Decimal(record["SpotPrice"])
            at = record.get("Timestamp") or datetime.min.replace(tzinfo=UTC)
            key = (record["InstanceType"], record.get("AvailabilityZone", ""))
            if price > 0 and (key not in latest or at > latest[key][0]):
                latest[key] = (at, price)
        if not response.get("NextToken"):
            break
        params["NextToken"] = response["NextToken"]
    prices: dict[str, Decimal] = {}
    for (instance_type, _zone), (_at, price) in latest.items():
        prices[instance_type] = max(price, prices.get(instance_type, price))
    return prices


# --- CloudWatch metrics (idle detection) --------------------------------------

METRIC_QUERIES_PER_CALL = 500  # GetMetricData's limit on MetricDataQueries
# CPUUtilization (Average), NetworkIn (Sum), NetworkOut (Sum) for each instance.
_INSTANCE_METRICS = (("c", "CPUUtilization", "Average"), ("i", "NetworkIn", "Sum"),
                     ("o", "NetworkOut", "Sum"))
INSTANCES_PER_METRICS_CALL = METRIC_QUERIES_PER_CALL // len(_INSTANCE_METRICS)


@dataclass
class InstanceMetrics:
    """One instance's datapoints, each stamped with the start of its period."""

    cpu: dict[datetime, float]  # average CPU % per period
    network: dict[datetime, float]  # bytes in + out per period

    @property
    def cpu_max(self) -> float | None:
        return max(self.cpu.values()) if self.cpu else None

    @property
    def cpu_avg(self) -> float | None:
        return sum(self.cpu.values()) / len(self.cpu) if self.cpu else None

    @property
    def network_bytes(self) -> float:
        return sum(self.network.values())


@dataclass
class Metrics:
    instances: dict[str, InstanceMetrics]
    calls: int  # GetMetricData requests made, pages included


def metrics_fetch(account: CloudAccount, *, instance_ids: list[str], start: datetime,
                  end: datetime, period: int) -> Metrics:
    """CPU and network datapoints of many instances, in as few requests as AWS allows.

    Three queries per instance, so 166 instances per GetMetricData call (the
    limit is 500 queries); NextToken pages are followed. An instance with no
    datapoints comes back with empty series.
    """
    instance_ids = list(dict.fromkeys(instance_ids))
    found = {iid: InstanceMetrics(cpu={}, network={}) for iid in instance_ids}
    calls = 0
    client = _client(account, "cloudwatch") if instance_ids else None
    for first in range(0, len(instance_ids), INSTANCES_PER_METRICS_CALL):
        batch = instance_ids[first:first + INSTANCES_PER_METRICS_CALL]
        queries = [
            {"Id": f"{prefix}{n}", "ReturnData": True,
             "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": name,
                                       "Dimensions": [{"Name": "InstanceId", "Value": iid}]},
                            "Period": period, "Stat": stat}}
            for n, iid in enumerate(batch) for prefix, name, stat in _INSTANCE_METRICS
        ]
        params: dict = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end,
                        "ScanBy": "TimestampAscending"}
        while True:
            try:
                response = client.get_metric_data(**params)
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc) from exc
            calls += 1
            for result in response.get("MetricDataResults", []):
                prefix, n = result["Id"][0], int(result["Id"][1:])
                series = found[batch[n]]
                for at, value in zip(result.get("Timestamps", []), result.get("Values", []),
                                     strict=False):
                    at = at if at.tzinfo else at.replace(tzinfo=UTC)
                    if prefix == "c":
                        series.cpu[at] = float(value)
                    else:
                        series.network[at] = series.network.get(at, 0.0) + float(value)
            if not response.get("NextToken"):
                break
            params["NextToken"] = response["NextToken"]
    return Metrics(instances=found, calls=calls)


# --- reconcile: every Lens-tagged instance in an account ---------------------

# DescribeInstances takes MaxResults between 5 and 1,000; a filter takes up to 200 values.
_PAGE_MIN, _PAGE_MAX = 5, 1000
_FILTER_VALUES_MAX = 200
_TRANSITION_AT = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")


@dataclass(frozen=True)
class TaggedInstance(Instance):
    """An instance as the reconciler needs it: why and when it last changed state."""

    state_reason_code: str = ""  # e.g. Client.UserInitiatedShutdown, Server.SpotInstanceTermination
    state_transition_reason: str = ""  # e.g. "User initiated (2026-01-12 10:00:00 GMT)"

    @classmethod
    def from_api(cls, data: dict) -> TaggedInstance:
        base = Instance.from_api(data)
        return cls(**base.__dict__,
                   state_reason_code=(data.get("StateReason") or {}).get("Code", ""),
                   state_transition_reason=data.get("StateTransitionReason", "") or "")

    @property
    def workspace_id(self) -> int | None:
        try:
            return int(self.tags.get(TAG_WORKSPACE, ""))
        except ValueError:
            return None

    @property
    def transition_at(self) -> datetime | None:
        """When AWS last changed the instance's state, if it says (stops and terminations do)."""
        match = _TRANSITION_AT.search(self.state_transition_reason)
        if not match:
            return None
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)

    @property
    def is_spot_interruption(self) -> bool:
        return self.state_reason_code == "Server.SpotInstanceTermination"


@dataclass
class InstanceListing:
    """Instances from a paged listing, and how many requests it took."""

    instances: list[TaggedInstance]
    calls: int


def instances_describe_tagged(account: CloudAccount, *, page_size: int = _PAGE_MAX,
                              ) -> InstanceListing:
    """Every instance in the account that carries a Lens workspace tag, in any state.

    One DescribeInstances per page of `page_size` (AWS allows 5 to 1,000), so
    N instances cost ⌈N/1000⌉ calls. Terminated instances are included while
    AWS still lists them (about an hour): that is how a console terminate is seen.
    """
    page_size = max(_PAGE_MIN, min(_PAGE_MAX, page_size))
    params: dict = {"Filters": [{"Name": "tag-key", "Values": [TAG_WORKSPACE]}],
                    "MaxResults": page_size}
    instances: list[TaggedInstance] = []
    calls = 0
    while True:
        try:
            response = _client(account, "ec2").describe_instances(**params)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc
        calls += 1
        instances.extend(TaggedInstance.from_api(i) for r in response["Reservations"]
                         for i in r["Instances"])
        if not response.get("NextToken"):
            return InstanceListing(instances, calls)
        params["NextToken"] = response["NextToken"]


def instances_describe_ids(account: CloudAccount, instance_ids: list[str]) -> InstanceListing:
    """These instances, tagged or not; ids AWS no longer knows are simply absent.

    A filter rather than InstanceIds, because one unknown id would fail the
    whole InstanceIds request.
    """
    instances: list[TaggedInstance] = []
    calls = 0
    for start in range(0, len(instance_ids), _FILTER_VALUES_MAX):
        params: dict = {"Filters": [{"Name": "instance-id",
                                     "Values": instance_ids[start:start + _FILTER_VALUES_MAX]}]}
        while True:
            try:
                response = _client(account, "ec2").describe_instances(**params)
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc) from exc
            calls += 1
            instances.extend(TaggedInstance.from_api(i) for r in response["Reservations"]
                             for i in r["Instances"])
            if not response.get("NextToken"):
                break
            params["NextToken"] = response["NextToken"]
    return InstanceListing(instances, calls)
