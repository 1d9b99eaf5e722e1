"""REST API for the weekly reports. Thin: access and figures are in billing.reports."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import reports
from billing.serializers import (
    CourseReportSerializer,
    MemberReportSerializer,
    ReportQuerySerializer,
)

_REFUSALS = {403: OpenApiResponse(description="Your role does not show this money"),
             404: OpenApiResponse(description="Not found, or not visible to you")}


def _week(request):
    query = ReportQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data.get("week")


class MemberReportView(APIView):
    @extend_schema(parameters=[ReportQuerySerializer],
                   responses={200: MemberReportSerializer, **_REFUSALS},
                   summary="A member's weekly cost report (the member and course staff)")
    def get(self, request, membership_id: int):
        owner = reports.report_member_get(user=request.user, membership_id=membership_id)
        end = reports.report_end_resolve(course=owner.course, week=_week(request),
                                         now=timezone.now())
        report = reports.member_weekly_report(membership=owner, end=end)
        return Response(MemberReportSerializer(report).data)


class CourseReportView(APIView):
    @extend_schema(parameters=[ReportQuerySerializer],
                   responses={200: CourseReportSerializer, **_REFUSALS},
                   summary="The course's weekly cost report (course staff)")
    def get(self, request, course_id: int):
        course = reports.report_course_get(user=request.user, course_id=course_id)
        end = reports.report_end_resolve(course=course, week=_week(request), now=timezone.now())
        return Response(CourseReportSerializer(
            reports.course_weekly_report(course=course, end=end)).data)
