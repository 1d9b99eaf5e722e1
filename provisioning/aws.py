"""The AWS adapter: the only module in Lens that imports boto3.

One function per operation. Clients are built lazily per cloud account, with
timeouts and botocore's adaptive retries; failures come out as Lens's own
exceptions so callers never see botocore types.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

if TYPE_CHECKING:
    from provisioning.models import CloudAccount

TAG_WORKSPACE = "lens:workspace"
TAG_COURSE = "lens:course"
TAG_MEMBER = "lens:member"

_THROTTLE_CODES = {"RequestLimitExceeded", "Throttling", "ThrottlingException",
                   "TooManyRequestsException"}
_CAPACITY_CODES = {"InsufficientInstanceCapacity", "InstanceLimitExceeded",
                   "MaxSpotInstanceCountExceeded", "VcpuLimitExceeded"}
_NOT_FOUND_CODES = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}
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
        )


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
        if status >= 500:
            return AwsUnavailable(text)
        return AwsError(text)
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
) -> Instance:
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
    if account.subnet_id:
        params["SubnetId"] = account.subnet_id
    if account.security_group_id:
        params["SecurityGroupIds"] = [account.security_group_id]
    if root_volume_gib:
        params["BlockDeviceMappings"] = [
            {"DeviceName": "/dev/xvda",
             "Ebs": {"VolumeSize": root_volume_gib, "VolumeType": "gp3",
                     "DeleteOnTermination": True}},
        ]
    try:
        response = _client(account, "ec2").run_instances(**params)
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc) from exc
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


def instances_stop(account: CloudAccount, instance_ids: list[str], *,
                   hibernate: bool = False) -> None:
    try:
        _client(account, "ec2").stop_instances(InstanceIds=instance_ids, Hibernate=hibernate)
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc) from exc


def instances_start(account: CloudAccount, instance_ids: list[str]) -> None:
    try:
        _client(account, "ec2").start_instances(InstanceIds=instance_ids)
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc) from exc
