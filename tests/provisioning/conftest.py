"""Fixtures for the lifecycle tests: a workspace already running on the fake AWS."""

import pytest

from provisioning import services
from provisioning.models import Workspace
from tests.conftest import ec2


@pytest.fixture
def launch(django_capture_on_commit_callbacks):
    """Launch through the service and run its tasks (eagerly), as the page does."""

    def _launch(member, *, name="hw1", slug="ml-cpu-student", market="on_demand") -> Workspace:
        with django_capture_on_commit_callbacks(execute=True):
            workspace = services.workspace_launch(membership=member, template_slug=slug,
                                                  name=name, actor=member.user, market=market)
        workspace.refresh_from_db()
        return workspace

    return _launch


@pytest.fixture
def running(student, approved, launch):
    workspace = launch(student)
    assert workspace.state == "running"
    return workspace


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Call a service and run what it queued after commit (the Celery tasks, eagerly)."""

    def _run(service, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            result = service(**kwargs)
        return result

    return _run


def volume(endpoint, volume_id):
    return ec2(endpoint).describe_volumes(VolumeIds=[volume_id])["Volumes"][0]


def instance(endpoint, instance_id):
    response = ec2(endpoint).describe_instances(InstanceIds=[instance_id])
    return response["Reservations"][0]["Instances"][0]
