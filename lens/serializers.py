from decimal import Decimal

from rest_framework import serializers

from billing.models import LedgerEntry


class MemberMoneySerializer(serializers.Serializer):
    cap = serializers.DecimalField(max_digits=12, decimal_places=2)
    spend = serializers.DecimalField(max_digits=18, decimal_places=6)
    committed = serializers.DecimalField(max_digits=18, decimal_places=6)
    remaining = serializers.DecimalField(max_digits=18, decimal_places=6)
    percent = serializers.IntegerField()


class LedgerEntrySerializer(serializers.ModelSerializer):
    actor = serializers.EmailField(source="actor.email", allow_null=True, default=None)

    class Meta:
        model = LedgerEntry
        fields = ["id", "kind", "meter", "workspace_id", "amount", "usd_per_hour",
                  "interval_start", "interval_end", "created_at", "actor", "note"]


class CapChangeSerializer(serializers.Serializer):
    cap = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal(0),
                                   max_value=Decimal(100000))
    reason = serializers.CharField(max_length=200)
    key = serializers.CharField(max_length=64, required=False,
                                help_text="Idempotency key: a retry with the same key "
                                          "changes nothing.")


class AdjustmentSerializer(CapChangeSerializer):
    cap = None
    amount = serializers.DecimalField(max_digits=12, decimal_places=2,
                                      min_value=Decimal(-10000), max_value=Decimal(10000),
                                      help_text="Negative is a credit.")

    def validate_amount(self, value):
        if value == 0:
            raise serializers.ValidationError("An adjustment of $0 changes nothing.")
        return value


class EstimateQuerySerializer(serializers.Serializer):
    hours = serializers.DecimalField(max_digits=6, decimal_places=2, min_value=Decimal("0.25"),
                                     max_value=Decimal(168), default=Decimal(6))
    sessions = serializers.IntegerField(min_value=1, max_value=21, default=3)


class EstimateSerializer(serializers.Serializer):
    usd_per_hour = serializers.DecimalField(max_digits=12, decimal_places=4)
    session_hours = serializers.DecimalField(max_digits=6, decimal_places=2)
    sessions_per_week = serializers.IntegerField()
    per_session = serializers.DecimalField(max_digits=12, decimal_places=2)
    per_week = serializers.DecimalField(max_digits=12, decimal_places=2)
    per_month = serializers.DecimalField(max_digits=12, decimal_places=2)
    per_day_running = serializers.DecimalField(max_digits=12, decimal_places=2)
    remaining = serializers.DecimalField(max_digits=18, decimal_places=2, allow_null=True)
    weeks_of_runway = serializers.DecimalField(max_digits=12, decimal_places=1, allow_null=True)
