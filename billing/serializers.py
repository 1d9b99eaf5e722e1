"""API shapes of the weekly reports. Money goes out as decimal strings, never floats."""

from rest_framework import serializers


def _usd(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=18, decimal_places=6, **kwargs)


def _cents(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=14, decimal_places=2, **kwargs)


def _share(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=10, decimal_places=4,
                                    help_text="Spend over cap: 1.0000 is the whole cap.", **kwargs)


class ReportQuerySerializer(serializers.Serializer):
    week = serializers.DateField(
        required=False,
        help_text="Last day of the week to report, in the course's time zone; "
                  "default: the seven days up to now.")


class DayCostSerializer(serializers.Serializer):
    day = serializers.DateField(help_text="A day in the course's time zone.")
    amount = _usd()


class WorkspaceCostSerializer(serializers.Serializer):
    workspace_id = serializers.IntegerField(
        allow_null=True, help_text="Null for staff adjustments and credits.")
    label = serializers.CharField()
    amount = _usd()


class MemberReportSerializer(serializers.Serializer):
    membership_id = serializers.IntegerField(source="membership.pk")
    course_id = serializers.IntegerField(source="membership.course_id")
    time_zone = serializers.CharField(source="membership.course.time_zone")
    start = serializers.DateField(help_text="First of the seven days.")
    last_day = serializers.DateField()
    days = DayCostSerializer(many=True)
    workspaces = WorkspaceCostSerializer(many=True, source="per_workspace")
    week_total = _usd()
    month_to_date = _usd()
    term_to_date = _usd()
    burn_per_week = _cents()
    projected_term_total = _cents(allow_null=True,
                                  help_text="Null unless the course has start and end dates.")
    cap = _cents()
    share = _share()
    status = serializers.ChoiceField(choices=["ok", "warn", "over"], source="level",
                                     help_text="warn from 80 % of the cap, over from 100 %.")


class MemberWeekSerializer(serializers.Serializer):
    membership_id = serializers.IntegerField(source="membership.pk")
    email = serializers.EmailField(source="membership.email")
    name = serializers.CharField(source="membership.name")
    role = serializers.CharField(source="membership.role")
    section = serializers.CharField(source="membership.section")
    week = _usd()
    term_to_date = _usd()
    cap = _cents()
    share = _share()


class SectionWeekSerializer(serializers.Serializer):
    section = serializers.CharField()
    members = serializers.IntegerField()
    week = _usd()
    term_to_date = _usd()
    cap = _cents()


class CourseReportSerializer(serializers.Serializer):
    course_id = serializers.IntegerField(source="course.pk")
    code = serializers.CharField(source="course.code")
    time_zone = serializers.CharField(source="course.time_zone")
    start = serializers.DateField()
    last_day = serializers.DateField()
    days = DayCostSerializer(many=True)
    week_total = _usd()
    month_to_date = _usd()
    term_to_date = _usd()
    burn_per_week = _cents()
    projected_term_total = _cents(allow_null=True)
    budget_total = _cents()
    members = MemberWeekSerializer(many=True, source="rows")
    sections = SectionWeekSerializer(many=True, help_text="Students only.")
    over_80 = serializers.SerializerMethodField(
        help_text="Membership ids at 80 % of their cap or more.")
    biggest = serializers.SerializerMethodField(
        help_text="Membership ids of this week's five biggest spenders.")

    def get_over_80(self, report) -> list[int]:
        return [r.membership.pk for r in report.over_80]

    def get_biggest(self, report) -> list[int]:
        return [r.membership.pk for r in report.biggest]
