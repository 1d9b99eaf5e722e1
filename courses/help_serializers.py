"""API shapes for messages and help requests. Rules are in the services."""

from rest_framework import serializers

from courses.help_queue import SUMMARY_MAX, TEXT_MAX, user_display
from courses.inbox import BODY_MAX, SUBJECT_MAX
from courses.models import HelpRequest, Message


class MessageSerializer(serializers.ModelSerializer):
    course = serializers.CharField(source="course.code", read_only=True)
    unread = serializers.BooleanField(source="is_unread", read_only=True)

    class Meta:
        model = Message
        fields = ["id", "course", "course_id", "recipient_id", "sender_name", "subject", "body",
                  "workspace_id", "workspace_name", "created_at", "read_at", "unread"]
        read_only_fields = fields


class MessageListQuerySerializer(serializers.Serializer):
    unread = serializers.BooleanField(required=False, default=False,
                                      help_text="Only messages not opened yet.")


class MessageSendSerializer(serializers.Serializer):
    subject = serializers.CharField(max_length=SUBJECT_MAX)
    body = serializers.CharField(max_length=BODY_MAX)
    workspace_id = serializers.IntegerField(required=False, allow_null=True, default=None,
                                            help_text="One of the student's workspaces.")


class HelpRequestSerializer(serializers.ModelSerializer):
    student = serializers.CharField(source="membership.display_name", read_only=True)
    claimed_by = serializers.SerializerMethodField()
    resolved_by = serializers.SerializerMethodField()

    class Meta:
        model = HelpRequest
        fields = ["id", "course_id", "membership_id", "student", "summary", "details",
                  "workspace_id", "workspace_name", "status", "created_at", "claimed_by",
                  "claimed_at", "resolved_by", "resolved_at", "resolution"]
        read_only_fields = fields

    def get_claimed_by(self, obj) -> str | None:
        return user_display(obj.claimed_by) if obj.claimed_by_id else None

    def get_resolved_by(self, obj) -> str | None:
        return user_display(obj.resolved_by) if obj.resolved_by_id else None


class HelpOpenSerializer(serializers.Serializer):
    summary = serializers.CharField(max_length=SUMMARY_MAX,
                                    help_text="A few words, e.g. “my training crashes”.")
    details = serializers.CharField(max_length=TEXT_MAX, required=False, allow_blank=True,
                                    default="")
    workspace_id = serializers.IntegerField(required=False, allow_null=True, default=None,
                                            help_text="One of your workspaces.")


class HelpResolveSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=TEXT_MAX, required=False, allow_blank=True,
                                 default="", help_text="What fixed it; the student sees it.")
