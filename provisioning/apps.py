from django.apps import AppConfig


def _workspace_names(ids: list[int]) -> dict[int, str]:
    from provisioning.models import Workspace

    return dict(Workspace.objects.filter(pk__in=ids).values_list("pk", "name"))


def _member_workspaces(membership_id: int) -> list[tuple[int, str]]:
    from provisioning.models import Workspace

    return list(Workspace.objects.visible_on_dashboard().filter(owner_id=membership_id)
                .order_by("-created_at").values_list("pk", "name"))


def _requestable_templates(course):
    from courses.approvals import RequestableTemplate
    from provisioning.services import course_template_offers

    return [RequestableTemplate(slug=o.template.slug, name=o.template.name,
                                instance_type=o.template.instance_type,
                                usd_per_hour=o.usd_per_hour, note=o.approved.note)
            for o in course_template_offers(course_ids=[course.pk])[course.pk]
            if o.approved.requires_approval]


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "Provisioning"

    def ready(self) -> None:
        from billing.reports import workspace_namer_register
        from courses.approvals import approvals_pending_count, requestable_templates_register
        from courses.inbox import workspace_lister_register
        from courses.signals import membership_revoked
        from provisioning.course_page import pending_approvals_counter_register
        from provisioning.receivers import workspaces_stop_for_revoked

        workspace_namer_register(_workspace_names)  # reports show names, not ids
        # Messages and help requests may be about a workspace; courses cannot list them.
        workspace_lister_register(_member_workspaces)
        # courses does not import provisioning; it announces revocations and we act.
        membership_revoked.connect(workspaces_stop_for_revoked,
                                   dispatch_uid="provisioning.workspaces_stop_for_revoked")
        # Requests: courses asks which templates need approval; the course page
        # counts pending requests.
        requestable_templates_register(_requestable_templates)
        pending_approvals_counter_register(approvals_pending_count)
