import threading

import pytest
from django.db import connection

from provisioning.models import Workspace, WorkspaceEvent
from provisioning.services import (
    StaleState,
    TransitionNotAllowed,
    cloud_account_default,
    workspace_transition,
)
from provisioning.states import ALLOWED, State
from tests.factories import TemplateFactory

ALLOWED_PAIRS = [(a, b) for a, targets in ALLOWED.items() for b in sorted(targets)]
REFUSED_PAIRS = [(a, b) for a in State for b in State if b not in ALLOWED[a]]


def make_workspace(owner, state):
    return Workspace.objects.create(owner=owner, template=TemplateFactory(), name=f"w-{state}",
                                    cloud_account=cloud_account_default(),
                                    instance_type="t3.medium", state=state)


@pytest.mark.parametrize(("current", "target"), ALLOWED_PAIRS)
def test_every_allowed_transition_changes_state_and_writes_one_event(student, current, target):
    workspace = make_workspace(student, current)

    workspace_transition(workspace=workspace, to=target, reason="test")

    workspace.refresh_from_db()
    assert workspace.state == target
    event = WorkspaceEvent.objects.get(workspace=workspace)
    assert (event.from_state, event.to_state) == (current, target)


@pytest.mark.parametrize(("current", "target"), REFUSED_PAIRS)
def test_a_transition_the_machine_does_not_allow_raises_and_changes_nothing(
        student, current, target):
    workspace = make_workspace(student, current)

    with pytest.raises(TransitionNotAllowed):
        workspace_transition(workspace=workspace, to=target)

    workspace.refresh_from_db()
    assert workspace.state == current
    assert not WorkspaceEvent.objects.filter(workspace=workspace).exists()


def test_the_table_covers_the_design_path_and_terminating_from_anywhere():
    assert State.PENDING in ALLOWED[State.REQUESTED]
    assert State.RUNNING in ALLOWED[State.PENDING]
    assert State.PENDING in ALLOWED[State.STOPPED]
    live = set(State) - {State.TERMINATING, State.TERMINATED, State.ARCHIVED}
    assert all(State.TERMINATING in ALLOWED[s] for s in live)
    assert ALLOWED[State.ARCHIVED] == frozenset()


def test_a_stale_copy_cannot_overwrite_a_newer_state(student):
    workspace = make_workspace(student, State.RUNNING)
    stale = Workspace.objects.get(pk=workspace.pk)
    workspace_transition(workspace=workspace, to=State.STOPPING)

    with pytest.raises(StaleState):
        workspace_transition(workspace=stale, to=State.HIBERNATING)
    assert Workspace.objects.get(pk=workspace.pk).state == State.STOPPING


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_changes_from_the_same_state_leave_exactly_one_event(student):
    workspace = make_workspace(student, State.RUNNING)
    barrier = threading.Barrier(2)
    outcomes = []

    def change(target):
        copy = Workspace.objects.get(pk=workspace.pk)
        barrier.wait()
        try:
            workspace_transition(workspace=copy, to=target)
            outcomes.append(("won", target))
        except StaleState:
            outcomes.append(("lost", target))
        finally:
            connection.close()

    threads = [threading.Thread(target=change, args=(t,))
               for t in (State.STOPPING, State.HIBERNATING)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(o[0] for o in outcomes) == ["lost", "won"]
    winner = next(t for o, t in outcomes if o == "won")
    assert Workspace.objects.get(pk=workspace.pk).state == winner
    assert WorkspaceEvent.objects.filter(workspace=workspace).count() == 1
