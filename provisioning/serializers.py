from rest_framework import serializers

from provisioning.approvals import TemplateApproval, approval_errors
from provisioning.models import Workspace, WorkspaceEvent, WorkspaceTemplate


class TemplateOfferSerializer(serializers.Serializer):
    slug = serializers.CharField(source="template.slug")
    name = serializers.CharField(source="template.name")
    description = serializers.CharField(source="template.description")
    instance_type = serializers.CharField(source="template.instance_type")
    usd_per_hour = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)
    usd_per_day = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    spot_allowed = serializers.BooleanField(source="template.spot_allowed")
    spot_usd_per_hour = serializers.DecimalField(max_digits=12, decimal_places=4,
                                                 allow_null=True)
    hibernation = serializers.BooleanField(source="template.hibernation")
    requires_approval = serializers.BooleanField(source="approved.requires_approval")
    note = serializers.CharField(source="approved.note")


class WorkspaceEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkspaceEvent
        fields = ["from_state", "to_state", "at", "reason"]


class WorkspaceSerializer(serializers.ModelSerializer):
    course = serializers.IntegerField(source="owner.course_id", read_only=True)
    owner_email = serializers.EmailField(source="owner.email", read_only=True)
    template = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Workspace
        fields = ["id", "name", "course", "owner_email", "template", "instance_type", "state",
                  "state_changed_at", "instance_id", "public_ip", "public_dns", "stop_reason",
                  "market", "home_volume_id", "reset_step",
                  "failure_reason", "compute_usd_per_hour", "storage_usd_per_hour",
                  "last_session_seconds", "last_session_cost", "created_at"]
        read_only_fields = fields


class WorkspaceDetailSerializer(WorkspaceSerializer):
    events = WorkspaceEventSerializer(many=True, read_only=True)

    class Meta(WorkspaceSerializer.Meta):
        fields = [*WorkspaceSerializer.Meta.fields, "events"]
        read_only_fields = fields


class LaunchSerializer(serializers.Serializer):
    course = serializers.IntegerField()
    template = serializers.SlugField(help_text="Slug of a template the course approved.")
    name = serializers.CharField(max_length=63)
    market = serializers.ChoiceField(choices=["on_demand", "spot"], default="on_demand",
                                     help_text="spot: cheaper, may be interrupted (if the "
                                               "template allows it).")


class ApprovedTemplateSerializer(serializers.Serializer):
    """One line of a course's approved list, read and written by the course API."""

    template = serializers.SlugRelatedField(slug_field="slug",
                                            queryset=WorkspaceTemplate.objects.all(),
                                            help_text="The template's slug.")
    name = serializers.CharField(source="template.name", read_only=True)
    instance_type = serializers.CharField(source="template.instance_type", read_only=True)
    requires_approval = serializers.BooleanField(default=False)
    note = serializers.CharField(max_length=200, allow_blank=True, default="",
                                 help_text='e.g. "final project only"')
    capacity = serializers.IntegerField(allow_null=True, default=None,
                                        help_text="Slots; null = no limit.")

    def validate(self, attrs):
        errors = approval_errors(values=attrs)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    @staticmethod
    def approvals(lines: list[dict]) -> list[TemplateApproval]:
        return [TemplateApproval(**line) for line in lines]
