"""Billing pages and API: the weekly reports."""

from django.urls import path

from billing import api, views

urlpatterns = [
    path("members/<int:membership_id>/report/", views.member_report, name="member-report"),
    path("members/<int:membership_id>/report.csv", views.member_report_csv,
         name="member-report-csv"),
    path("courses/<int:course_id>/report/", views.course_report, name="course-report"),
    path("courses/<int:course_id>/report.csv", views.course_report_csv,
         name="course-report-csv"),
    path("api/members/<int:membership_id>/report/", api.MemberReportView.as_view(),
         name="api-member-report"),
    path("api/courses/<int:course_id>/report/", api.CourseReportView.as_view(),
         name="api-course-report"),
]
