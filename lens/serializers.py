from decimal import Decimal

from rest_framework import serializers

from billing.models import LedgerEntry
from courses import setup
from courses.models import Course
from provisioning.approvals import course_templates_of
from provisioning.serializers import ApprovedTemplateSerializer


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


def _money(**kwargs):
    return serializers.DecimalField(max_digits=12, decimal_places=2, **kwargs)


class LocalDateTimeField(serializers.DateTimeField):
    """A wall-clock time in the course's time zone, written without an offset
    (2026-12-01T09:00); courses.setup makes it aware with the course's zone."""

    def enforce_timezone(self, value):
        if value.tzinfo is not None:
            self.fail("local")
        return value

    default_error_messages = {
        "local": "Give the local time in the course's time zone, without an offset "
                 "(e.g. 2026-12-01T09:00).",
    }


class CourseSerializer(serializers.Serializer):
    """A course's settings and approved templates; the rules are courses.setup's.

    The term is given as local first and last days in `time_zone`; `starts_at`
    and `ends_at` are the resulting UTC instants (the last day ends 23:59:59
    local).
    """

    id = serializers.IntegerField(read_only=True)
    status = serializers.CharField(read_only=True)
    code = serializers.CharField(max_length=40)
    title = serializers.CharField(max_length=200)
    term_label = serializers.CharField(max_length=60, allow_blank=True, required=False)
    kind = serializers.ChoiceField(choices=Course.Kind.choices, required=False)
    time_zone = serializers.CharField(max_length=64, help_text="An IANA name, e.g. "
                                                               "America/New_York.")
    start_date = serializers.DateField()
    end_date = serializers.DateField()
    starts_at = serializers.DateTimeField(read_only=True)
    ends_at = serializers.DateTimeField(read_only=True)
    budget_total = _money(required=False, help_text="0 = no course-wide total.")
    default_member_budget = _money(required=False)
    expected_students = serializers.IntegerField(allow_null=True, required=False)
    max_concurrent_workspaces = serializers.IntegerField(required=False,
                                                         help_text="0 = no limit.")
    max_daily_cost = _money(allow_null=True, required=False)
    idle_stop_minutes = serializers.IntegerField(allow_null=True, required=False)
    term_end_stop = serializers.BooleanField(required=False)
    term_end_archive = serializers.BooleanField(required=False)
    term_end_revoke = serializers.BooleanField(required=False)
    term_end_report = serializers.BooleanField(required=False)
    retention_days = serializers.IntegerField(required=False)
    head_ta_may_approve = serializers.BooleanField(
        required=False, help_text="Head TAs may approve or deny students' requests.")
    workshop_start = LocalDateTimeField(
        allow_null=True, required=False,
        help_text="Workshops only: local start in the course's time zone.")
    workshop_duration_minutes = serializers.IntegerField(allow_null=True, required=False,
                                                         help_text="Workshops only.")
    workshop_extension_minutes = serializers.IntegerField(
        allow_null=True, required=False,
        help_text="Workshops only: access continues this long after the end.")
    workshop_max_participants = serializers.IntegerField(allow_null=True, required=False,
                                                         help_text="Workshops only.")
    workshop_access_ends_at = serializers.DateTimeField(
        read_only=True, help_text="When participants' access is revoked (UTC).")
    approved_templates = ApprovedTemplateSerializer(
        many=True, required=False,
        help_text="The whole approved list; when given on update it replaces the old one.")

    def validate(self, attrs):
        course = self.context.get("course")
        base = setup.course_settings_of(course) if course is not None else dict(setup.DEFAULTS)
        values = {**base, **{k: v for k, v in attrs.items() if k in setup.SETTINGS_FIELDS}}
        errors = setup.course_settings_errors(values=values, course=course)
        slugs = [line["template"].slug for line in attrs.get("approved_templates", [])]
        twice = sorted({slug for slug in slugs if slugs.count(slug) > 1})
        if twice:
            errors["approved_templates"] = [f"Listed more than once: {', '.join(twice)}."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    @staticmethod
    def data_of(course: Course) -> dict:
        return {**setup.course_settings_of(course), "id": course.pk, "status": course.status,
                "starts_at": course.starts_at, "ends_at": course.ends_at,
                "workshop_access_ends_at": course.workshop_access_ends_at,
                "approved_templates": course_templates_of(course=course)}


class WorkshopCodeSerializer(serializers.Serializer):
    access_code = serializers.CharField(help_text="As people type it, e.g. ABCD-EFGH-JKMN.")
    join_url = serializers.URLField()

    @staticmethod
    def data_of(course: Course, request) -> dict:
        from django.urls import reverse

        from courses.workshops import access_code_display

        return {"access_code": access_code_display(course.access_code),
                "join_url": request.build_absolute_uri(
                    reverse("workshop-join-code", args=[access_code_display(course.access_code)]))}


class CourseListSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="course.id")
    code = serializers.CharField(source="course.code")
    title = serializers.CharField(source="course.title")
    term_label = serializers.CharField(source="course.term_label")
    status = serializers.CharField(source="course.status")
    role = serializers.CharField()


class CourseDuplicateSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=40)
    title = serializers.CharField(max_length=200, required=False)
    term_label = serializers.CharField(max_length=60, allow_blank=True, required=False)
    start_date = serializers.DateField()
    end_date = serializers.DateField()

    def validate(self, attrs):
        errors = setup.course_settings_errors(values=attrs)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs
