from django.contrib import admin

from provisioning.models import (
    ApprovedTemplate,
    CloudAccount,
    KeyPair,
    LaunchQueueEntry,
    OrphanInstance,
    Workspace,
    WorkspaceEvent,
    WorkspaceTemplate,
)


@admin.register(CloudAccount)
class CloudAccountAdmin(admin.ModelAdmin):
    list_display = ["name", "region", "endpoint_url", "vpc_id", "network_managed", "is_default"]
    readonly_fields = ["network_managed", "network_open_ports"]


@admin.register(WorkspaceTemplate)
class WorkspaceTemplateAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "instance_type", "image", "spot_allowed", "version"]
    search_fields = ["slug", "name"]


@admin.register(ApprovedTemplate)
class ApprovedTemplateAdmin(admin.ModelAdmin):
    list_display = ["course", "template", "requires_approval", "capacity", "note"]
    list_filter = ["course"]


class WorkspaceEventInline(admin.TabularInline):
    model = WorkspaceEvent
    extra = 0
    can_delete = False
    readonly_fields = ["from_state", "to_state", "at", "actor", "reason"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    """Read-mostly: state changes go through the state machine, not the admin."""

    list_display = ["name", "owner", "template", "state", "instance_id", "created_at"]
    list_filter = ["state", "owner__course"]
    search_fields = ["name", "instance_id", "owner__email"]
    readonly_fields = ["state", "state_changed_at", "instance_id", "client_token", "public_ip",
                       "private_ip", "public_dns", "failure_reason", "stop_reason",
                       "last_activity_at", "last_heartbeat_at", "last_heartbeat",
                       "idle_warned_at", "idle_stop_at", "job_finished_at"]
    inlines = [WorkspaceEventInline]


@admin.register(WorkspaceEvent)
class WorkspaceEventAdmin(admin.ModelAdmin):
    list_display = ["workspace", "from_state", "to_state", "at", "actor", "reason"]
    list_filter = ["to_state"]


@admin.register(KeyPair)
class KeyPairAdmin(admin.ModelAdmin):
    """Public keys only (Lens has no private ones); people change their own on their page."""

    list_display = ["user", "fingerprint", "key_type", "source", "created_at"]
    search_fields = ["user__email", "fingerprint"]
    readonly_fields = ["user", "name", "key_type", "public_key", "fingerprint", "source",
                       "created_at"]


@admin.register(LaunchQueueEntry)
class LaunchQueueEntryAdmin(admin.ModelAdmin):
    """Read-only: the line moves through provisioning.slots (admit, leave, skip)."""

    list_display = ["workspace", "membership", "course", "template", "status", "created_at",
                    "admitted_at", "reason"]
    list_filter = ["status", "course", "template"]
    search_fields = ["membership__email", "workspace__name"]
    readonly_fields = ["course", "template", "membership", "workspace", "status", "created_at",
                       "admitted_at", "closed_at", "reason"]


@admin.register(OrphanInstance)
class OrphanInstanceAdmin(admin.ModelAdmin):
    """Machines with Lens's tags that no workspace accounts for; the reconciler keeps this."""

    list_display = ["instance_id", "instance_type", "aws_state", "why", "action", "course_id",
                    "first_seen", "last_seen", "resolved_at"]
    list_filter = ["action", "aws_state", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["instance_id", "why"]
    readonly_fields = ["cloud_account", "instance_id", "instance_type", "aws_state", "tags",
                       "workspace_id", "course_id", "why", "action", "first_seen", "last_seen",
                       "resolved_at"]

    def has_add_permission(self, request):
        return False
