from django.apps import AppConfig


def _workspace_names(ids: list[int]) -> dict[int, str]:
    from provisioning.models import Workspace

    return dict(Workspace.objects.filter(pk__in=ids).values_list("pk", "name"))


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "Provisioning"

    def ready(self) -> None:
        from billing.reports import workspace_namer_register

        workspace_namer_register(_workspace_names)  # reports show names, not ids
