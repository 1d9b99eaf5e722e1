"""Messages and the help queue: pages and API."""

from django.urls import path

from courses import help_api as api
from courses import help_views as views

urlpatterns = [
    path("courses/<int:course_id>/help/", views.help_queue_page, name="help-queue"),
    path("courses/<int:course_id>/help/ask/", views.help_ask, name="help-ask"),
    path("courses/<int:course_id>/help/<int:request_id>/claim/", views.help_claim,
         name="help-claim"),
    path("courses/<int:course_id>/help/<int:request_id>/release/", views.help_release,
         name="help-release"),
    path("courses/<int:course_id>/help/<int:request_id>/resolve/", views.help_resolve,
         name="help-resolve"),
    path("courses/<int:course_id>/help/<int:request_id>/cancel/", views.help_cancel,
         name="help-cancel"),
    path("courses/<int:course_id>/members/<int:membership_id>/message/",
         views.message_compose, name="message-compose"),
    path("messages/<int:message_id>/", views.message_open, name="message-open"),
    path("messages/<int:message_id>/read/", views.message_read, name="message-read"),
    path("api/messages/", api.MyMessagesView.as_view(), name="api-messages"),
    path("api/messages/<int:message_id>/read/", api.MessageReadView.as_view(),
         name="api-message-read"),
    path("api/courses/<int:course_id>/members/<int:membership_id>/messages/",
         api.MemberMessagesView.as_view(), name="api-member-messages"),
    path("api/courses/<int:course_id>/help/", api.CourseHelpView.as_view(),
         name="api-course-help"),
    path("api/courses/<int:course_id>/help/<int:request_id>/claim/",
         api.HelpClaimView.as_view(), name="api-help-claim"),
    path("api/courses/<int:course_id>/help/<int:request_id>/release/",
         api.HelpReleaseView.as_view(), name="api-help-release"),
    path("api/courses/<int:course_id>/help/<int:request_id>/resolve/",
         api.HelpResolveView.as_view(), name="api-help-resolve"),
    path("api/courses/<int:course_id>/help/<int:request_id>/cancel/",
         api.HelpCancelView.as_view(), name="api-help-cancel"),
]
