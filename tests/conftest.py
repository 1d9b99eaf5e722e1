"""Shared fixtures: real PostgreSQL and Redis (from the environment that
`make test` sets up), and a moto server for AWS, reset for every test."""

import os
import socket
import urllib.request

import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from billing.services import prices_load_bundled  # noqa: E402
from lens.celery import app as celery_app  # noqa: E402
from provisioning import aws, ratelimit  # noqa: E402
from tests.factories import (  # noqa: E402
    ApprovedTemplateFactory,
    CourseFactory,
    MembershipFactory,
    TemplateFactory,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def fake_aws(moto_endpoint, settings):
    """Every test starts with an empty fake AWS account."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset",
                                                  method="POST"))
    settings.AWS_ENDPOINT_URL = moto_endpoint
    settings.AWS_DEFAULT_REGION = "us-east-1"
    aws.clients_reset()
    yield moto_endpoint


@pytest.fixture(autouse=True)
def full_rate_buckets():
    """Every test starts with Lens's EC2 rate buckets full (they live in the shared Redis)."""
    ratelimit.buckets_reset()
    ratelimit.buckets_clear()
    yield
    ratelimit.buckets_reset()


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def eager_celery():
    """Tasks run in-process unless a test starts a real worker."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def prices(db):
    prices_load_bundled()


@pytest.fixture
def course(db):
    return CourseFactory(code="CS229", title="Machine Learning")


@pytest.fixture
def approved(course, prices):
    """ml-cpu-student (t3.medium) approved for the course."""
    return ApprovedTemplateFactory(course=course, template=TemplateFactory())


@pytest.fixture
def student(course):
    return MembershipFactory(course=course, user__username="emily")


@pytest.fixture
def other_student(course):
    return MembershipFactory(course=course, user__username="david")


def ec2(endpoint):
    import boto3

    return boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)


def instances_tagged(endpoint, workspace_id):
    response = ec2(endpoint).describe_instances(Filters=[
        {"Name": "tag:lens:workspace", "Values": [str(workspace_id)]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
    ])
    return [i for r in response["Reservations"] for i in r["Instances"]]
