"""Live updates: one function per kind of change, called after commit.

The member's dashboard subscribes to the group `member-<membership id>` and
receives the re-rendered list of that member's workspaces; htmx swaps it in
by id (out-of-band), so a card appears, moves along and shows its address
without a reload. Staff watching the course page subscribe to `course-<course
id>` and receive the changed student's row and the course's recent events.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.template.loader import render_to_string

log = logging.getLogger(__name__)


def member_group(membership_id: int) -> str:
    return f"member-{membership_id}"


def course_group(course_id: int) -> str:
    return f"course-{course_id}"


def broadcast_member_workspaces(*, membership_id: int) -> None:
    """Send the member's workspace list and budget bar to their open dashboards."""
    from provisioning.cards import member_workspace_context

    try:
        html = render_to_string("provisioning/_member_live.html",
                                {**member_workspace_context(membership_id=membership_id),
                                 "oob": True})
        async_to_sync(get_channel_layer().group_send)(
            member_group(membership_id), {"type": "workspaces.update", "html": html}
        )
    except Exception:  # a lost live update must never undo or fail the change itself
        log.exception("broadcast to member %s failed", membership_id)
    broadcast_course_member(membership_id=membership_id)


def broadcast_course_member(*, membership_id: int) -> None:
    """Send the member's row of the staff course page, and the course's recent
    events, to everyone watching that page. Staff members have no row: nothing sent."""
    from provisioning.course_page import course_events_recent, course_student_row

    try:
        row = course_student_row(membership_id=membership_id)
        if row is None:
            return
        course = row.membership.course
        html = render_to_string("provisioning/_course_live.html", {
            "course": course, "row": row,
            "events": course_events_recent(course_id=course.pk), "oob": True})
        async_to_sync(get_channel_layer().group_send)(
            course_group(course.pk), {"type": "course.update", "html": html}
        )
    except Exception:  # a lost live update must never undo or fail the change itself
        log.exception("broadcast of member %s to their course failed", membership_id)


def broadcast_queue_positions(*, course_id: int, template_id: int) -> None:
    """Tell everyone waiting in a capacity pool their place in line: a small fragment per
    queued card, from one pass over the pool (three queries however long the line)."""
    from provisioning.slots import queue_statuses

    try:
        statuses = queue_statuses(pools=[(course_id, template_id)])
        send = async_to_sync(get_channel_layer().group_send)
        for workspace_id, (membership_id, status) in statuses.items():
            html = render_to_string("provisioning/_queue_status.html",
                                    {"workspace_id": workspace_id, "status": status,
                                     "queue_oob": True})
            send(member_group(membership_id), {"type": "workspaces.update", "html": html})
    except Exception:  # a lost live update must never undo or fail the change itself
        log.exception("queue positions for course %s template %s failed", course_id,
                      template_id)
