"""Weekly report pages and CSV downloads. Thin: access and figures are in billing.reports."""

from __future__ import annotations

from datetime import date, timedelta

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.text import slugify

from billing import reports


def _week(request) -> date | None:
    """The `week` query (last day of the week): a malformed one means this week."""
    try:
        return date.fromisoformat(request.GET.get("week", ""))
    except ValueError:
        return None


def _paging(report, course) -> dict:
    """Query values for the previous/next week links and the CSV link of this week.

    An empty value means the current week; next_week is None on the current week.
    """
    today = timezone.now().astimezone(course.zone).date()
    current = report.last_day >= today
    following = report.last_day + timedelta(days=7)
    return {"previous_week": (report.last_day - timedelta(days=7)).isoformat(),
            "next_week": None if current else ("" if following >= today else following.isoformat()),
            "week_param": "" if current else report.last_day.isoformat()}


def _csv_response(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _member_report(request, membership_id: int):
    owner = reports.report_member_get(user=request.user, membership_id=membership_id)
    end = reports.report_end_resolve(course=owner.course, week=_week(request), now=timezone.now())
    return reports.member_weekly_report(membership=owner, end=end)


def _course_report(request, course_id: int):
    course = reports.report_course_get(user=request.user, course_id=course_id)
    end = reports.report_end_resolve(course=course, week=_week(request), now=timezone.now())
    return reports.course_weekly_report(course=course, end=end)


@login_required
def member_report(request, membership_id: int):
    report = _member_report(request, membership_id)
    return render(request, "billing/weekly_report.html",
                  {"report": report, "course": report.course, "member": report.membership,
                   **_paging(report, report.course)})


@login_required
def member_report_csv(request, membership_id: int):
    report = _member_report(request, membership_id)
    return _csv_response(reports.member_report_csv(report=report),
                         f"lens-{slugify(report.course.code)}-member-{membership_id}-"
                         f"{report.last_day.isoformat()}.csv")


@login_required
def course_report(request, course_id: int):
    report = _course_report(request, course_id)
    return render(request, "billing/course_weekly_report.html",
                  {"report": report, "course": report.course, **_paging(report, report.course)})


@login_required
def course_report_csv(request, course_id: int):
    report = _course_report(request, course_id)
    return _csv_response(reports.course_report_csv(report=report),
                         f"lens-{slugify(report.course.code)}-{report.last_day.isoformat()}.csv")
