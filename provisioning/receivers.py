"""What provisioning does when courses announces a change (see courses/signals.py)."""

from __future__ import annotations

from provisioning.models import Workspace


def workspaces_stop_for_revoked(sender, *, membership, actor=None, **kwargs) -> None:
    """A revoked member's running workspaces stop, in the revoking transaction.

    Machines still on their way up are caught when they reach running: the
    budget watch that runs then sees the revoked membership (enforcement).
    """
    from provisioning.services import member_workspaces_stop

    member_workspaces_stop(membership_id=membership.pk, actor=actor,
                           reason=Workspace.StopReason.REVOKED)
