"""API shapes for the roster. Validation beyond shape is in courses/roster.py."""

from rest_framework import serializers

from courses.models import Membership, Section
from courses.roster import NAME_MAX, SECTION_MAX


class MemberSerializer(serializers.ModelSerializer):
    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "section", "status", "user_id", "invited_at",
                  "invitation_sent_at", "revoked_at", "created_at"]
        read_only_fields = fields


class MemberListQuerySerializer(serializers.Serializer):
    section = serializers.CharField(required=False, allow_blank=True,
                                    help_text='A section name; "-" for members without one.')
    status = serializers.ChoiceField(choices=Membership.Status.choices, required=False)


class MemberAddSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    name = serializers.CharField(max_length=NAME_MAX, required=False, allow_blank=True,
                                 default="")
    section = serializers.CharField(max_length=SECTION_MAX, required=False, allow_blank=True,
                                    default="", help_text="One of the course's sections.")
    role = serializers.CharField(required=False, default=Membership.Role.STUDENT,
                                 help_text="instructor, head_ta, ta or student.")


class SectionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Section
        fields = ["id", "name"]


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="CSV with the header email,name,section "
                                           "(role optional), UTF-8.")
    digest = serializers.CharField(required=False, allow_blank=True, default="",
                                   help_text="The preview's digest: the commit is refused "
                                             "(409) if the outcome would differ from it.")


class RowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="Line in the file; the header is line 1.")
    field = serializers.CharField()
    message = serializers.CharField()


class PreviewRowSerializer(serializers.Serializer):
    row = serializers.IntegerField()
    email = serializers.CharField()
    name = serializers.CharField()
    section = serializers.CharField()
    role = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["new", "unchanged", "changed", "revoked",
                                               "error"])
    changes = serializers.ListField(child=serializers.CharField())
    errors = RowErrorSerializer(many=True)


class ImportCountsSerializer(serializers.Serializer):
    new = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    changed = serializers.IntegerField()
    revoked = serializers.IntegerField()
    error = serializers.IntegerField()


class ImportPreviewSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="True when a commit would import the file.")
    file_error = serializers.CharField(help_text="Why the file as a whole cannot be read.")
    counts = ImportCountsSerializer()
    digest = serializers.CharField()
    errors = RowErrorSerializer(many=True)
    rows = PreviewRowSerializer(many=True)


class ImportRefusedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    preview = ImportPreviewSerializer()


class ImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    revoked = serializers.IntegerField(help_text="Revoked members in the file, left revoked.")
