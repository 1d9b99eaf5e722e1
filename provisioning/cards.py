"""What a workspace card shows, built for many members in a constant number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property

from billing.services import price_map
from courses.models import Membership
from provisioning.connect import ConnectInfo, workspace_connect
from provisioning.metering import member_money_get
from provisioning.models import Workspace
from provisioning.slots import queue_status_attach


@dataclass(frozen=True)
class WorkspaceCard:
    workspace: Workspace
    usd_per_hour: Decimal | None

    @property
    def usd_per_day(self) -> Decimal | None:
        return None if self.usd_per_hour is None else self.usd_per_hour * 24

    @cached_property
    def connect(self) -> ConnectInfo:
        """The card is its owner's own view, so the command is theirs."""
        return workspace_connect(workspace=self.workspace, viewer_is_owner=True)


def member_workspace_cards(*, membership_ids: list[int]) -> dict[int, list[WorkspaceCard]]:
    workspaces = list(
        Workspace.objects.visible_on_dashboard()
        .filter(owner_id__in=membership_ids)
        .select_related("template", "owner__course", "owner__user__ssh_key")
        .order_by("-created_at")
    )
    queue_status_attach(workspaces)  # queued cards show their place in line
    prices = price_map(keys={(w.owner.course.region, w.instance_type) for w in workspaces})
    cards: dict[int, list[WorkspaceCard]] = {mid: [] for mid in membership_ids}
    for w in workspaces:
        price = prices.get((w.owner.course.region, w.instance_type))
        cards[w.owner_id].append(WorkspaceCard(w, price.usd_per_hour if price else None))
    return cards


def member_workspace_context(*, membership_id: int) -> dict:
    """Context for one member's live fragments: workspace list and budget bar."""
    membership = Membership.objects.select_related("course").get(pk=membership_id)
    cards = member_workspace_cards(membership_ids=[membership_id])[membership_id]
    return {"membership": membership, "cards": cards,
            "money": member_money_get(membership, workspaces=[c.workspace for c in cards])}
