from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "Provisioning"

    def ready(self):
        # courses does not import provisioning; it announces revocations and we act.
        from courses.signals import membership_revoked
        from provisioning.receivers import workspaces_stop_for_revoked

        membership_revoked.connect(workspaces_stop_for_revoked,
                                   dispatch_uid="provisioning.workspaces_stop_for_revoked")
