"""Live updates for messages and the help queue, called after commit.

Staff watching a course's help queue listen on `course-<id>-help` and get the
re-rendered queue. A student's open dashboard already listens on
`member-<membership id>` (provisioning's socket for their workspace cards);
the same socket carries their inbox and help-request panel, as out-of-band
htmx fragments with their own ids, so no second connection is needed.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.template.loader import render_to_string

log = logging.getLogger(__name__)


def help_group(course_id: int) -> str:
    return f"course-{course_id}-help"


def member_group(membership_id: int) -> str:
    """The dashboard's group: the same name provisioning.broadcast uses."""
    return f"member-{membership_id}"


def _send(group: str, kind: str, html: str) -> None:
    async_to_sync(get_channel_layer().group_send)(group, {"type": kind, "html": html})


def course_group(course_id: int) -> str:
    """The staff course page's group: the same name provisioning.broadcast uses."""
    return f"course-{course_id}"


def broadcast_course_stats(*, course_id: int) -> None:
    """Send the course page's counters (help queue, pending requests) to open pages."""
    from courses.approvals import approvals_pending_count
    from courses.help_queue import help_queue_counts
    from courses.models import Course

    try:
        course = Course.objects.get(pk=course_id)
        html = render_to_string("lens/_course_stats.html", {
            "course": course, "oob": True,
            "pending_approvals": approvals_pending_count(course),
            "help_queue": help_queue_counts(course_ids=[course_id])[course_id]})
        _send(course_group(course_id), "course.update", html)
    except Exception:  # a lost live update must never undo or fail the change itself
        log.exception("broadcast of course %s's counters failed", course_id)


def help_queue_context(*, course) -> dict:
    from courses.help_queue import help_queue_list

    return {"course": course, "requests": help_queue_list(course=course)}


def broadcast_help_queue(*, course_id: int) -> None:
    """Send the course's waiting requests to every open queue page."""
    from courses.models import Course

    try:
        course = Course.objects.get(pk=course_id)
        html = render_to_string("courses/_help_queue.html",
                                {**help_queue_context(course=course), "oob": True})
        _send(help_group(course_id), "help.update", html)
    except Exception:  # a lost live update must never undo or fail the change itself
        log.exception("broadcast of course %s's help queue failed", course_id)


def help_ask_form(*, membership, workspaces, data=None):
    from courses.help_forms import HelpAskForm

    return HelpAskForm(data, workspaces=workspaces, auto_id=f"help-{membership.pk}-%s")


_LOAD = object()


def member_help_context(*, membership, form=None, current=_LOAD, workspaces=None) -> dict:
    """The student's help panel: their current request (or None), or the form to
    ask. The dashboard passes what it already loaded; a live update loads it here."""
    from courses.help_queue import help_requests_current
    from courses.inbox import member_workspaces

    if current is _LOAD:
        current = help_requests_current(membership_ids=[membership.pk]).get(membership.pk)
    if form is None and (current is None or not current.is_waiting):
        if workspaces is None:
            workspaces = member_workspaces(membership_id=membership.pk)
        form = help_ask_form(membership=membership, workspaces=workspaces)
    return {"membership": membership, "course": membership.course, "help": current,
            "form": form}


def broadcast_member_help(*, membership_id: int) -> None:
    """Send the student's help panel (their request's status) to their dashboard."""
    from courses.models import Membership

    try:
        membership = Membership.objects.select_related("course").get(pk=membership_id)
        html = render_to_string("courses/_help_panel.html",
                                {**member_help_context(membership=membership), "oob": True})
        _send(member_group(membership_id), "member.update", html)
    except Exception:
        log.exception("broadcast of member %s's help request failed", membership_id)


def member_inbox_context(*, membership, opened: int | None = None) -> dict:
    from courses.inbox import inboxes_for

    return {"membership": membership, "course": membership.course,
            "inbox": inboxes_for(membership_ids=[membership.pk])[membership.pk],
            "opened": opened}


def broadcast_member_inbox(*, membership_id: int) -> None:
    """Send the student's inbox (a new message, the unread count) to their dashboard."""
    from courses.models import Membership

    try:
        membership = Membership.objects.select_related("course").get(pk=membership_id)
        html = render_to_string("courses/_inbox.html",
                                {**member_inbox_context(membership=membership), "oob": True})
        _send(member_group(membership_id), "member.update", html)
    except Exception:
        log.exception("broadcast of member %s's inbox failed", membership_id)
