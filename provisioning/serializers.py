from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from provisioning.approvals import TemplateApproval, approval_errors
from provisioning.connect import workspace_connect
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


class ConnectSerializer(serializers.Serializer):
    ready = serializers.BooleanField()
    why_not = serializers.CharField()
    ssh_command = serializers.CharField()
    jupyter_url = serializers.CharField()
    key_note = serializers.CharField()


class WorkspaceDetailSerializer(WorkspaceSerializer):
    events = WorkspaceEventSerializer(many=True, read_only=True)
    connect = serializers.SerializerMethodField()

    class Meta(WorkspaceSerializer.Meta):
        fields = [*WorkspaceSerializer.Meta.fields, "key_name", "events", "connect"]
        read_only_fields = fields

    @extend_schema_field(ConnectSerializer)
    def get_connect(self, workspace) -> dict:
        """The exact ssh command and Jupyter URL (placeholders until it runs)."""
        request = self.context.get("request")
        is_owner = request is not None and workspace.owner.user_id == request.user.pk
        info = workspace_connect(workspace=workspace, viewer_is_owner=is_owner)
        return ConnectSerializer(info).data


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


class KeyPairSerializer(serializers.Serializer):
    name = serializers.CharField(read_only=True)
    key_type = serializers.CharField(read_only=True)
    public_key = serializers.CharField(read_only=True)
    fingerprint = serializers.CharField(read_only=True)
    source = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class KeyUploadSerializer(serializers.Serializer):
    public_key = serializers.CharField(max_length=16_000,
                                       help_text="One OpenSSH public key line (ed25519 or RSA "
                                                 "≥ 2048 bits).")

    def validate_public_key(self, value: str) -> str:
        from provisioning.keys import KeyRefused, public_key_parse

        try:
            public_key_parse(text=value)
        except KeyRefused as refusal:
            raise serializers.ValidationError(refusal.message) from None
        return value


class GeneratedKeySerializer(KeyPairSerializer):
    private_key = serializers.CharField(read_only=True,
                                        help_text="Shown this once; Lens keeps no copy.")
    private_key_filename = serializers.CharField(read_only=True)


class HeartbeatSerializer(serializers.Serializer):
    """What the activity agent on a workspace reports each minute."""

    jupyter_kernels_busy = serializers.IntegerField(min_value=0, default=0)
    jupyter_active = serializers.BooleanField(
        default=False, help_text="A kernel ran something in the last ten minutes.")
    jupyter_servers = serializers.IntegerField(min_value=0, default=0)
    ssh_sessions = serializers.IntegerField(
        min_value=0, default=0, help_text="Terminals typed into in the last ten minutes.")
    ssh_connections = serializers.IntegerField(min_value=0, default=0)
    at = serializers.DateTimeField(required=False, help_text="The agent's clock, for display.")
