from django.contrib import admin

from billing.models import (
    BudgetAlert,
    InstancePrice,
    LedgerEntry,
    ReportDelivery,
    StoragePrice,
)


@admin.register(InstancePrice)
class InstancePriceAdmin(admin.ModelAdmin):
    list_display = ["instance_type", "region", "market", "usd_per_hour", "vcpu", "memory_gib",
                    "gpu_count", "source", "fetched_on"]
    list_filter = ["region", "market"]
    search_fields = ["instance_type"]


@admin.register(StoragePrice)
class StoragePriceAdmin(admin.ModelAdmin):
    list_display = ["volume_type", "region", "usd_per_gb_month", "source", "fetched_on"]
    list_filter = ["region", "volume_type"]


class _ReadOnly(admin.ModelAdmin):
    """Money history is changed through the services (or not at all), never by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(_ReadOnly):
    list_display = ["created_at", "membership", "kind", "meter", "amount", "workspace_id",
                    "actor", "note"]
    list_filter = ["kind", "meter", "course"]
    search_fields = ["membership__email", "note", "idempotency_key"]


@admin.register(BudgetAlert)
class BudgetAlertAdmin(_ReadOnly):
    list_display = ["created_at", "course", "membership", "threshold", "message"]
    list_filter = ["threshold", "course"]


@admin.register(ReportDelivery)
class ReportDeliveryAdmin(_ReadOnly):
    list_display = [f.name for f in ReportDelivery._meta.fields][:6]
