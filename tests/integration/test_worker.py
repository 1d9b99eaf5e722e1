"""A real Celery worker on Redis: POST launch → the workspace runs, in the database and in moto."""

import time
from pathlib import Path

import pytest

from lens.celery import app as celery_app
from provisioning.models import Workspace
from provisioning.states import State
from tests.conftest import instances_tagged
from tests.factories import PASSWORD
from tests.stack import celery_worker

LOGS = Path(__file__).resolve().parents[2] / "var" / "test-logs"


@pytest.fixture
def worker(transactional_db, fake_aws):
    celery_app.conf.task_always_eager = False
    with celery_worker(fake_aws, LOGS) as proc:
        yield proc


def wait_for_state(workspace_id, states, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        workspace = Workspace.objects.get(pk=workspace_id)
        if workspace.state in states:
            return workspace
        time.sleep(0.2)
    raise AssertionError(f"workspace stayed {workspace.state}: {workspace.failure_reason}")


def test_a_launch_posted_to_the_api_reaches_running_through_a_real_worker(
        worker, client, student, approved, fake_aws):
    client.login(username=student.user.username, password=PASSWORD)

    response = client.post("/api/workspaces/", {"course": student.course_id,
                                                "template": "ml-cpu-student", "name": "real"})
    assert response.status_code == 201
    workspace = wait_for_state(response.json()["id"], {State.RUNNING, State.FAILED})

    assert workspace.state == State.RUNNING, workspace.failure_reason
    [instance] = instances_tagged(fake_aws, workspace.pk)
    assert instance["InstanceId"] == workspace.instance_id
    assert instance["State"]["Name"] == "running"

    stop = client.post(f"/api/workspaces/{workspace.pk}/stop/")
    assert stop.status_code == 202
    assert wait_for_state(workspace.pk, {State.STOPPED}).stop_reason == "user"
