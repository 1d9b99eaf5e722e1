"""Budget changes by course staff: caps and adjustments, from the page and the API.

Lives in lens/ because a change touches both apps: billing records it, and
provisioning must re-plan the member's budget stop at once.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from billing import ledger
from courses.models import Membership
from provisioning import tasks


def _replan(membership_id: int) -> None:
    transaction.on_commit(lambda: tasks.member_budget_watch_task.delay(membership_id))


def member_cap_change(*, membership: Membership, cap: Decimal, actor, reason: str,
                      key: str) -> bool:
    """Set a member's cap (a ledger line says who and why) and re-plan their stop."""
    with transaction.atomic():
        changed = ledger.cap_set(membership=membership, cap=cap, actor=actor, note=reason,
                                 key=key)
        if changed:
            _replan(membership.pk)
    return changed


def member_adjustment_grant(*, membership: Membership, amount: Decimal, actor, reason: str,
                            key: str) -> bool:
    """A credit (negative) or a charge (positive) on the member's spend."""
    with transaction.atomic():
        line = ledger.adjustment_grant(membership=membership, amount=amount, actor=actor,
                                       note=reason, key=key)
        if line is not None:
            _replan(membership.pk)
    return line is not None


def member_cap_shift(*, membership: Membership, delta: Decimal, actor, reason: str,
                     key: str) -> Decimal:
    """Move a member's cap by `delta` (never below $0): approved budget requests
    and their expiry. Reads the cap under the member's row lock, so two grants
    at once both count. Returns the cap afterwards."""
    with transaction.atomic():
        locked = (Membership.objects.select_for_update(of=("self",), no_key=True)
                  .select_related("course").get(pk=membership.pk))
        cap = max(Decimal(0), ledger.member_cap(locked) + delta)
        member_cap_change(membership=locked, cap=cap, actor=actor, reason=reason, key=key)
    membership.budget_cap = locked.budget_cap
    return locked.budget_cap
