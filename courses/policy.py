"""Who may do what in a course: the one place that answers it.

Every page, API endpoint and websocket consumer asks here. Roles are per
course; an outsider (no active membership) may do nothing.
"""

from __future__ import annotations

from enum import StrEnum

from courses.models import Membership

Role = Membership.Role


class Action(StrEnum):
    VIEW_COURSE = "view_course"
    LAUNCH = "launch"
    VIEW_WORKSPACE = "view_workspace"
    OPERATE_WORKSPACE = "operate_workspace"  # stop, start, hibernate
    RESET_WORKSPACE = "reset_workspace"  # back up, replace the machine, keep the home volume
    DELETE_WORKSPACE = "delete_workspace"  # terminate for good (the home is backed up first)
    VIEW_MONEY = "view_money"  # a member's spend, ledger and reports
    MANAGE_BUDGET = "manage_budget"  # change caps, grant adjustments
    VIEW_COURSE_MONEY = "view_course_money"  # every member's spend, the course report
    LINK_LMS = "link_lms"  # link an LMS course (LTI context) to this course
    SYNC_LMS_ROSTER = "sync_lms_roster"  # pull the roster from the linked LMS course
    VIEW_SETTINGS = "view_settings"  # the course's settings page, read-only
    MANAGE_COURSE = "manage_course"  # change settings and approved templates, duplicate
    VIEW_ROSTER = "view_roster"  # who is in the course, in which role and section
    MANAGE_ROSTER = "manage_roster"  # add, import, invite, revoke; sections
    MANAGE_WORKSHOP_CODE = "manage_workshop_code"  # see and regenerate a workshop's code
    SEND_MESSAGE = "send_message"  # staff write to a student of their course (owner)
    VIEW_HELP_QUEUE = "view_help_queue"  # the course's help queue, live
    HANDLE_HELP = "handle_help"  # claim, release and resolve help requests
    OPEN_HELP_REQUEST = "open_help_request"  # a student asks for help, for themself
    REQUEST_APPROVAL = "request_approval"  # ask for a template or more budget, for oneself
    VIEW_APPROVALS = "view_approvals"  # the course's requests and their decisions
    DECIDE_APPROVAL = "decide_approval"  # approve or deny another member's request
    VIEW_SLOTS = "view_slots"  # who holds a capacity pool's slots and who waits for one


# Course-wide powers over other members' workspaces, by role.
_STAFF_WORKSPACE_ACTIONS: dict[str, set[Action]] = {
    Role.INSTRUCTOR: {Action.VIEW_WORKSPACE, Action.OPERATE_WORKSPACE, Action.VIEW_MONEY,
                      Action.MANAGE_BUDGET, Action.RESET_WORKSPACE, Action.DELETE_WORKSPACE},
    Role.HEAD_TA: {Action.VIEW_WORKSPACE, Action.OPERATE_WORKSPACE, Action.VIEW_MONEY,
                   Action.RESET_WORKSPACE},
    Role.TA: {Action.VIEW_WORKSPACE, Action.VIEW_MONEY},
    Role.STUDENT: set(),
}
_COURSE_ACTIONS: dict[str, set[Action]] = {
    Role.INSTRUCTOR: {Action.VIEW_COURSE_MONEY, Action.VIEW_SETTINGS, Action.MANAGE_COURSE,
                      Action.VIEW_ROSTER, Action.MANAGE_ROSTER},
    Role.HEAD_TA: {Action.VIEW_COURSE_MONEY, Action.VIEW_SETTINGS, Action.VIEW_ROSTER,
                   Action.MANAGE_ROSTER},
    Role.TA: {Action.VIEW_COURSE_MONEY, Action.VIEW_SETTINGS, Action.VIEW_ROSTER},
    Role.STUDENT: set(),
}
# LTI: instructors link LMS courses; instructors and head TAs pull the LMS roster.
_COURSE_ACTIONS[Role.INSTRUCTOR] |= {Action.LINK_LMS, Action.SYNC_LMS_ROSTER}
_COURSE_ACTIONS[Role.HEAD_TA] |= {Action.SYNC_LMS_ROSTER}
# Workshops: the access code admits anyone, so only the instructor sees or changes it.
_COURSE_ACTIONS[Role.INSTRUCTOR] |= {Action.MANAGE_WORKSHOP_CODE}
# Office hours: every staff role works the help queue.
for _role in (Role.INSTRUCTOR, Role.HEAD_TA, Role.TA):
    _COURSE_ACTIONS[_role] |= {Action.VIEW_HELP_QUEUE, Action.HANDLE_HELP}
_STAFF_ROLES = {Role.INSTRUCTOR, Role.HEAD_TA, Role.TA}
# Requests: all staff see them; deciding is the instructor's, and the head TA's
# only where the course allows it (see membership_may).
for _role in (Role.INSTRUCTOR, Role.HEAD_TA, Role.TA):
    _COURSE_ACTIONS[_role] |= {Action.VIEW_APPROVALS}


def _may_decide(actor: Membership, owner: Membership | None) -> bool:
    """Nobody decides their own request; head TAs only when the course allows it."""
    if owner is not None and owner.pk == actor.pk:
        return False
    if actor.role == Role.INSTRUCTOR:
        return True
    return actor.role == Role.HEAD_TA and actor.course.head_ta_may_approve
# Capacity pools (GPU slots): all staff see who holds them and who waits.
for _role in (Role.INSTRUCTOR, Role.HEAD_TA, Role.TA):
    _COURSE_ACTIONS[_role] |= {Action.VIEW_SLOTS}


def membership_may(*, actor: Membership | None, action: Action,
                   owner: Membership | None = None) -> bool:
    """May the member `actor` do `action`, on what belongs to the member `owner`
    (a workspace, their money), or on the course itself when `owner` is None?

    `actor` must be the acting user's membership in the object's course (the
    caller looks it up by course), so another course's membership never
    grants anything.
    """
    if actor is None or actor.status != Membership.Status.ACTIVE:
        return False
    if owner is not None and owner.course_id != actor.course_id:
        return False
    if action is Action.VIEW_COURSE:
        return True
    if action is Action.LAUNCH:
        return True
    if action is Action.SEND_MESSAGE:  # staff to a student; never student to student
        return (actor.role in _STAFF_ROLES and owner is not None
                and owner.role == Role.STUDENT)
    if action is Action.OPEN_HELP_REQUEST:  # students, for themselves only
        return actor.role == Role.STUDENT and (owner is None or owner.pk == actor.pk)
    if action is Action.REQUEST_APPROVAL:  # for themselves only
        return owner is None or owner.pk == actor.pk
    if action is Action.DECIDE_APPROVAL:
        return _may_decide(actor, owner)
    if owner is None:
        return action in _COURSE_ACTIONS[actor.role]
    if owner.pk == actor.pk and action in {Action.VIEW_WORKSPACE, Action.OPERATE_WORKSPACE,
                                           Action.VIEW_MONEY, Action.RESET_WORKSPACE,
                                           Action.DELETE_WORKSPACE}:
        return True
    return action in _STAFF_WORKSPACE_ACTIONS[actor.role]


def user_may(*, user, course_id: int, action: Action, owner: Membership | None = None) -> bool:
    """`membership_may` for a user: looks up their active membership in `course_id`.

    A membership in any other course grants nothing here; neither does one
    that is invited or revoked.
    """
    if not getattr(user, "is_authenticated", False):
        return False
    actor = (Membership.objects.filter(user=user, course_id=course_id,
                                       status=Membership.Status.ACTIVE).first())
    if owner is not None and owner.course_id != course_id:
        return False
    return membership_may(actor=actor, action=action, owner=owner)
