"""Metering math on exact intervals."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing import ledger
from billing.models import LedgerEntry
from provisioning.metering import workspace_meter
from provisioning.models import Workspace, WorkspaceEvent
from provisioning.services import cloud_account_default
from provisioning.states import State
from tests.factories import TemplateFactory

T0 = datetime(2026, 9, 1, 9, 0, 0, tzinfo=UTC)
RATE = Decimal("0.0416")  # t3.medium
GP3_30GIB = Decimal("0.08") * 30 / 730  # $/hour for 30 GiB of gp3


def s(seconds):
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def workspace(student):
    return Workspace.objects.create(
        owner=student, template=TemplateFactory(), name="w", cloud_account=cloud_account_default(),
        instance_type="t3.medium", instance_id="i-1", state=State.RUNNING,
        compute_usd_per_hour=RATE, storage_usd_per_hour=ledger.money(GP3_30GIB))


def history(workspace, *steps):
    """steps: (seconds after T0, to_state); from_state follows the previous step."""
    previous = ""
    for at, state in steps:
        WorkspaceEvent.objects.create(workspace=workspace, from_state=previous, to_state=state,
                                      at=s(at))
        previous = state


def compute_total(workspace):
    return ledger._sum(LedgerEntry.objects.filter(workspace_id=workspace.pk, meter="compute"))


def storage_total(workspace):
    return ledger._sum(LedgerEntry.objects.filter(workspace_id=workspace.pk, meter="storage"))


def test_a_closed_run_is_billed_per_second(workspace):
    history(workspace, (0, State.REQUESTED), (10, State.PENDING), (40, State.RUNNING),
            (40 + 3600 + 17, State.STOPPING), (40 + 3600 + 30, State.STOPPED))

    workspace_meter(workspace=workspace, now=s(5000))

    assert compute_total(workspace) == ledger.money(RATE * Decimal(3617) / 3600)


def test_a_run_shorter_than_a_minute_is_billed_a_minute(workspace):
    history(workspace, (0, State.PENDING), (10, State.RUNNING), (25, State.STOPPING),
            (30, State.STOPPED))

    workspace_meter(workspace=workspace, now=s(600))

    assert compute_total(workspace) == ledger.money(RATE * 60 / 3600)


def test_a_stop_and_start_inside_a_minute_is_two_starts_two_minimums(workspace):
    history(workspace, (0, State.PENDING), (5, State.RUNNING), (20, State.STOPPING),
            (25, State.STOPPED), (30, State.PENDING), (35, State.RUNNING),
            (50, State.STOPPING), (55, State.STOPPED))

    workspace_meter(workspace=workspace, now=s(600))

    assert compute_total(workspace) == 2 * ledger.money(RATE * 60 / 3600)


def test_an_open_run_is_billed_up_to_now_and_again_later_without_double_counting(workspace):
    history(workspace, (0, State.PENDING), (0, State.RUNNING))

    workspace_meter(workspace=workspace, now=s(30))  # inside the first minute: the minimum
    assert compute_total(workspace) == ledger.money(RATE * 60 / 3600)
    workspace_meter(workspace=workspace, now=s(1800))
    workspace_meter(workspace=workspace, now=s(1800))  # twice at the same moment: nothing new
    workspace_meter(workspace=workspace, now=s(3600))

    assert compute_total(workspace) == RATE


def test_storage_is_billed_while_stopped_until_terminated(workspace):
    history(workspace, (0, State.PENDING), (0, State.RUNNING), (3600, State.STOPPING),
            (3600, State.STOPPED), (7200, State.TERMINATING), (10800, State.TERMINATED))

    workspace_meter(workspace=workspace, now=s(20000))

    assert compute_total(workspace) == RATE
    assert storage_total(workspace) == ledger.money(ledger.money(GP3_30GIB) * 3)


def test_spot_is_billed_at_the_spot_price_fixed_at_launch(workspace):
    spot = Decimal("0.0125")
    Workspace.objects.filter(pk=workspace.pk).update(market="spot", compute_usd_per_hour=spot)
    workspace.refresh_from_db()
    history(workspace, (0, State.PENDING), (0, State.RUNNING), (7200, State.STOPPING),
            (7210, State.STOPPED))

    workspace_meter(workspace=workspace, now=s(8000))

    assert compute_total(workspace) == spot * 2


def test_metering_twice_changes_nothing(workspace):
    history(workspace, (0, State.PENDING), (0, State.RUNNING), (100, State.STOPPING),
            (110, State.STOPPED))

    first = workspace_meter(workspace=workspace, now=s(200))
    second = workspace_meter(workspace=workspace, now=s(200))

    assert first == 2 and second == 0
