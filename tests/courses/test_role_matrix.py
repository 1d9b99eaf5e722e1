"""The whole role matrix: every kind of person × every action, allow or deny.

The expected table is written out by hand, not derived from the policy, so a
change to who may do what shows up here as a failing cell. A new Action
without a row fails `test_every_action_has_a_row`.
"""

import pytest

from courses.models import Membership
from courses.policy import Action, user_may
from tests.factories import CourseFactory, MembershipFactory, UserFactory

Role = Membership.Role
INS, HTA, TA, STU = "instructor", "head_ta", "ta", "student"
STAFF = {INS, HTA, TA}
EVERYONE = {INS, HTA, TA, STU}

# Actions on the course itself: who may.
COURSE_ACTIONS: dict[Action, set[str]] = {
    Action.VIEW_COURSE: EVERYONE,
    Action.LAUNCH: EVERYONE,
    Action.VIEW_COURSE_MONEY: STAFF,
    Action.LINK_LMS: {INS},
    Action.SYNC_LMS_ROSTER: {INS, HTA},
    Action.VIEW_SETTINGS: STAFF,
    Action.MANAGE_COURSE: {INS},
    Action.VIEW_ROSTER: STAFF,
    Action.MANAGE_ROSTER: {INS, HTA},
    Action.MANAGE_WORKSHOP_CODE: {INS},
    Action.VIEW_HELP_QUEUE: STAFF,
    Action.HANDLE_HELP: STAFF,
    Action.OPEN_HELP_REQUEST: {STU},
    Action.REQUEST_APPROVAL: EVERYONE,
    Action.VIEW_APPROVALS: STAFF,
    Action.VIEW_SLOTS: STAFF,
    Action.DECIDE_APPROVAL: {INS},  # the head TA too where the course allows it (below)
}
# Actions on what belongs to a member (workspaces, money): who may on their
# own, and who may on a student's.
MEMBER_ACTIONS: dict[Action, tuple[set[str], set[str]]] = {
    Action.VIEW_WORKSPACE: (EVERYONE, STAFF),
    Action.OPERATE_WORKSPACE: (EVERYONE, {INS, HTA}),
    Action.RESET_WORKSPACE: (EVERYONE, {INS, HTA}),
    Action.DELETE_WORKSPACE: (EVERYONE, {INS}),
    Action.VIEW_MONEY: (EVERYONE, STAFF),
    Action.MANAGE_BUDGET: ({INS}, {INS}),
    Action.SEND_MESSAGE: (set(), STAFF),  # staff write to students, never to themselves
    Action.OPEN_HELP_REQUEST: ({STU}, set()),  # for oneself only
    Action.REQUEST_APPROVAL: (EVERYONE, set()),  # for oneself only
    Action.DECIDE_APPROVAL: (set(), {INS}),  # never one's own request
}

# People who are not active members of the course: never allowed anything.
OUTSIDERS = ["outsider", "other_course_instructor", "invited", "revoked", "anonymous"]


@pytest.fixture
def people(db):
    course = CourseFactory(code="CS229")
    other = CourseFactory(code="CS101")
    members = {role: MembershipFactory(course=course, role=role, user__username=role)
               for role in EVERYONE}
    student_b = MembershipFactory(course=course, role=Role.STUDENT, user__username="student_b")
    strangers = {
        "outsider": UserFactory(username="outsider"),
        "other_course_instructor": MembershipFactory(
            course=other, role=Role.INSTRUCTOR, user__username="prof_elsewhere").user,
        "invited": MembershipFactory(course=course, role=Role.INSTRUCTOR,
                                     status=Membership.Status.INVITED,
                                     user__username="invited").user,
        "revoked": MembershipFactory(course=course, role=Role.HEAD_TA,
                                     status=Membership.Status.REVOKED,
                                     user__username="revoked").user,
    }
    from django.contrib.auth.models import AnonymousUser

    strangers["anonymous"] = AnonymousUser()
    return course, members, student_b, strangers


def test_every_action_has_a_row():
    assert set(COURSE_ACTIONS) | set(MEMBER_ACTIONS) == set(Action)


@pytest.mark.parametrize("action", list(COURSE_ACTIONS))
def test_course_actions_by_role(people, action):
    course, members, _, strangers = people
    allowed = {role for role, m in members.items()
               if user_may(user=m.user, course_id=course.pk, action=action)}
    assert allowed == COURSE_ACTIONS[action]
    for who in OUTSIDERS:
        assert not user_may(user=strangers[who], course_id=course.pk, action=action), who


@pytest.mark.parametrize("action", list(MEMBER_ACTIONS))
def test_actions_on_a_members_things_by_role(people, action):
    course, members, student_b, strangers = people
    own, on_student = MEMBER_ACTIONS[action]
    assert {role for role, m in members.items()
            if user_may(user=m.user, course_id=course.pk, action=action, owner=m)} == own
    assert {role for role, m in members.items()
            if user_may(user=m.user, course_id=course.pk, action=action,
                        owner=student_b)} == on_student
    for who in OUTSIDERS:
        assert not user_may(user=strangers[who], course_id=course.pk, action=action,
                            owner=student_b), who


@pytest.mark.parametrize("action", list(MEMBER_ACTIONS))
def test_a_course_role_grants_nothing_over_another_courses_members(people, action):
    course, members, _, _ = people
    elsewhere = MembershipFactory(course=CourseFactory(code="CS230"), role=Role.STUDENT)
    for m in members.values():
        assert not user_may(user=m.user, course_id=course.pk, action=action, owner=elsewhere)
        assert not user_may(user=m.user, course_id=elsewhere.course_id, action=action,
                            owner=elsewhere)


def test_head_tas_decide_requests_only_where_the_course_allows_it(people):
    course, members, student_b, _ = people
    course.head_ta_may_approve = True
    course.save()
    deciders = {role for role, m in members.items()
                if user_may(user=m.user, course_id=course.pk, action=Action.DECIDE_APPROVAL,
                            owner=student_b)}
    assert deciders == {INS, HTA}
    head_ta = members[HTA]
    assert not user_may(user=head_ta.user, course_id=course.pk,
                        action=Action.DECIDE_APPROVAL, owner=head_ta)
