"""The workspace state machine: the states and the transitions allowed between them.

Only `provisioning.services.workspace_transition` changes a workspace's state;
it consults this table.
"""

from django.db import models


class State(models.TextChoices):
    QUEUED = "queued", "Queued"
    REQUESTED = "requested", "Requested"
    PENDING = "pending", "Starting"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    HIBERNATING = "hibernating", "Hibernating"
    RESETTING = "resetting", "Resetting"
    TERMINATING = "terminating", "Terminating"
    TERMINATED = "terminated", "Terminated"
    ARCHIVED = "archived", "Archived"
    FAILED = "failed", "Failed"


# Every state but these may go to TERMINATING ("any → terminating").
_END_STATES = {State.TERMINATING, State.TERMINATED, State.ARCHIVED}

ALLOWED: dict[State, frozenset[State]] = {
    # Waiting for a capacity slot (provisioning/slots.py): admitted as a fresh launch
    # (requested) or a restart (pending); left or skipped back to where it came from.
    State.QUEUED: frozenset({State.REQUESTED, State.PENDING, State.STOPPED, State.FAILED,
                             State.TERMINATED}),
    State.REQUESTED: frozenset({State.PENDING, State.FAILED}),
    # pending → stopping: a spot machine reclaimed before it came up.
    State.PENDING: frozenset({State.RUNNING, State.FAILED, State.STOPPING}),
    State.RUNNING: frozenset({State.STOPPING, State.HIBERNATING, State.RESETTING}),
    State.STOPPING: frozenset({State.STOPPED}),
    # hibernating → stopping: AWS refused to hibernate, so it is a plain stop.
    State.HIBERNATING: frozenset({State.STOPPED, State.STOPPING}),
    State.STOPPED: frozenset({State.PENDING, State.QUEUED, State.RESETTING}),
    # resetting: backing up and replacing the machine; the home volume stays.
    State.RESETTING: frozenset({State.PENDING, State.FAILED}),
    State.FAILED: frozenset({State.RESETTING}),
    State.TERMINATING: frozenset({State.TERMINATED}),
    State.TERMINATED: frozenset({State.ARCHIVED}),
    State.ARCHIVED: frozenset(),
}
ALLOWED = {
    state: targets | ({State.TERMINATING} if state not in _END_STATES else frozenset())
    for state, targets in ALLOWED.items()
}

# States in which a machine may be costing compute money or is on its way.
ACTIVE_STATES = frozenset({State.REQUESTED, State.PENDING, State.RUNNING, State.STOPPING,
                           State.HIBERNATING, State.RESETTING})
# States in which a workspace holds one of its template's capacity slots (a queued
# one waits for a slot; a stopped one gave its slot back).
SLOT_STATES = ACTIVE_STATES
# States the worker is waiting on AWS to leave.
SETTLING_STATES = frozenset({State.PENDING, State.STOPPING, State.HIBERNATING,
                             State.TERMINATING})

# The progress bar on a card: the steps from asking to running.
LAUNCH_STEPS = (State.REQUESTED, State.PENDING, State.RUNNING)


def is_allowed(current: str, target: str) -> bool:
    return State(target) in ALLOWED[State(current)]
