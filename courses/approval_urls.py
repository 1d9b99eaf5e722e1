"""Request pages and API."""

from django.urls import path

from courses import approval_api as api
from courses import approval_views as views

urlpatterns = [
    path("courses/<int:course_id>/requests/", views.approval_requests, name="approval-requests"),
    path("courses/<int:course_id>/requests/<int:approval_id>/withdraw/", views.approval_withdraw,
         name="approval-withdraw"),
    path("courses/<int:course_id>/approvals/", views.approvals_page, name="course-approvals"),
    path("courses/<int:course_id>/approvals/<int:approval_id>/decide/", views.approval_decide,
         name="approval-decide"),
    path("api/courses/<int:course_id>/approvals/", api.CourseApprovalsView.as_view(),
         name="api-course-approvals"),
    path("api/courses/<int:course_id>/approvals/<int:approval_id>/decide/",
         api.ApprovalDecideView.as_view(), name="api-approval-decide"),
    path("api/courses/<int:course_id>/approvals/<int:approval_id>/withdraw/",
         api.ApprovalWithdrawView.as_view(), name="api-approval-withdraw"),
]
