from django.contrib import admin

from billing.models import InstancePrice, StoragePrice


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
