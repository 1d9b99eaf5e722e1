from django.apps import AppConfig


def _workspace_names(ids: list[int]) -> dict[int, str]:
    from provisioning.models import Workspace

    return dict(Workspace.objects.filter(pk__in=ids).values_list("pk", "name"))


def _member_workspaces(membership_id: int) -> list[tuple[int, str]]:
    from provisioning.models import Workspace

    return list(Workspace.objects.visible_on_dashboard().filter(owner_id=membership_id)
                .order_by("-created_at").values_list("pk", "name"))


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "Provisioning"

    def ready(self) -> None:
        from billing.reports import workspace_namer_register
        from courses.inbox import workspace_lister_register
        from courses.signals import membership_revoked
        from provisioning.receivers import workspaces_stop_for_revoked

        workspace_namer_register(_workspace_names)  # reports show names, not ids
        # Messages and help requests may be about a workspace; courses cannot list them.
        workspace_lister_register(_member_workspaces)
        # courses does not import provisioning; it announces revocations and we act.
        membership_revoked.connect(workspaces_stop_for_revoked,
                                   dispatch_uid="provisioning.workspaces_stop_for_revoked")
