"""API shapes for requests and decisions. Rules are in courses/approvals.py."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from courses.approvals import NOTE_MAX, REASON_MAX
from courses.models import Approval


class ApprovalSerializer(serializers.ModelSerializer):
    member = serializers.EmailField(source="membership.email", read_only=True)
    decided_by = serializers.EmailField(source="decided_by.email", allow_null=True,
                                        default=None, read_only=True)

    class Meta:
        model = Approval
        fields = ["id", "membership_id", "member", "kind", "template_slug", "amount", "reason",
                  "status", "created_at", "decided_by", "decided_at", "decision_note",
                  "expires_at", "granted_amount"]
        read_only_fields = fields


class ApprovalRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Approval.Kind.choices)
    template_slug = serializers.CharField(max_length=60, required=False, allow_blank=True,
                                          default="",
                                          help_text="For kind=template: a template the course "
                                                    "approves on request.")
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, required=False,
                                      allow_null=True, default=None, min_value=Decimal("0"),
                                      help_text="For kind=budget: how much more, in USD.")
    reason = serializers.CharField(max_length=REASON_MAX)


class ExpiryField(serializers.DateTimeField):
    """An instant with an offset (2026-12-01T17:00:00Z), or a wall-clock time
    without one, read in the course's time zone (2026-12-01T09:00)."""

    def enforce_timezone(self, value):
        return value


class ApprovalDecideSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    expires_at = ExpiryField(required=False, allow_null=True, default=None,
                             help_text="Approvals only; empty = no expiry.")
    note = serializers.CharField(max_length=NOTE_MAX, required=False, allow_blank=True,
                                 default="")
