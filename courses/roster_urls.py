"""Roster pages and API."""

from django.urls import path

from courses import roster_api as api
from courses import roster_views as views

urlpatterns = [
    path("courses/<int:course_id>/roster/", views.roster_page, name="course-roster"),
    path("courses/<int:course_id>/roster/add/", views.member_add, name="roster-add"),
    path("courses/<int:course_id>/roster/sections/", views.section_add, name="roster-section-add"),
    path("courses/<int:course_id>/roster/import/", views.import_preview,
         name="roster-import-preview"),
    path("courses/<int:course_id>/roster/import/commit/", views.import_commit,
         name="roster-import-commit"),
    path("courses/<int:course_id>/roster/<int:membership_id>/revoke/", views.member_revoke,
         name="roster-revoke"),
    path("courses/<int:course_id>/roster/<int:membership_id>/reinvite/", views.member_reinvite,
         name="roster-reinvite"),
    path("api/courses/<int:course_id>/members/", api.CourseMembersView.as_view(),
         name="api-course-members"),
    path("api/courses/<int:course_id>/members/<int:membership_id>/revoke/",
         api.MemberRevokeView.as_view(), name="api-member-revoke"),
    path("api/courses/<int:course_id>/members/<int:membership_id>/reinvite/",
         api.MemberReinviteView.as_view(), name="api-member-reinvite"),
    path("api/courses/<int:course_id>/sections/", api.CourseSectionsView.as_view(),
         name="api-course-sections"),
    path("api/courses/<int:course_id>/roster/import/preview/",
         api.RosterImportPreviewView.as_view(), name="api-roster-import-preview"),
    path("api/courses/<int:course_id>/roster/import/commit/",
         api.RosterImportCommitView.as_view(), name="api-roster-import-commit"),
]
