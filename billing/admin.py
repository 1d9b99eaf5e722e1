from django.contrib import admin

from billing.models import InstancePrice


@admin.register(InstancePrice)
class InstancePriceAdmin(admin.ModelAdmin):
    list_display = ["instance_type", "region", "market", "usd_per_hour", "vcpu", "memory_gib",
                    "gpu_count", "source", "fetched_on"]
    list_filter = ["region", "market"]
    search_fields = ["instance_type"]
