"""The professor's course page: students' workspaces, spend against cap, last
activity, section filter, who may see it, a query count that does not grow
with the class, and its live feed over the real Redis channel layer."""

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import ledger
from courses.models import Membership, Section
from provisioning.models import Workspace, WorkspaceEvent
from provisioning.services import cloud_account_default, workspace_transition
from provisioning.states import State
from tests.factories import CourseFactory, MembershipFactory
from tests.provisioning.test_consumers import communicator, session_cookie


@pytest.fixture
def prof(course):
    return MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                             user__username="prof")


def page(course, query=""):
    return f"/courses/{course.pk}/{query}"


def workspace(owner, template, name, state):
    return Workspace.objects.create(owner=owner, template=template,
                                    cloud_account=cloud_account_default(), name=name,
                                    instance_type=template.instance_type, state=state)


def row_of(html, member) -> str:
    match = re.search(rf'<tr id="course-row-{member.pk}".*?</tr>', html, re.S)
    assert match, f"no row for {member.email}"
    return match.group(0)


def test_rows_show_each_student_s_workspaces_spend_cap_and_last_activity(
        client, course, approved, prof, student):
    student.budget_cap = Decimal("40.00")
    student.save()
    invited = MembershipFactory(course=course, user=None, email="new@uni.example.edu",
                                status=Membership.Status.INVITED)
    revoked = MembershipFactory(course=course, status=Membership.Status.REVOKED)
    running = workspace(student, approved.template, "hw3", State.RUNNING)
    WorkspaceEvent.objects.create(workspace=running, from_state=State.PENDING,
                                  to_state=State.RUNNING,
                                  at=datetime(2026, 11, 20, 15, 5, tzinfo=UTC))
    ledger.adjustment_grant(membership=student, amount=Decimal("12.5"), actor=None, note="x",
                            key="a")
    client.force_login(prof.user)

    html = client.get(page(course)).content.decode()

    row = row_of(html, student)
    assert "hw3: Running" in row and 'class="badge state-running"' in row
    assert "$12.50" in row and "$40.00" in row and 'style="width: 31%"' in row
    assert "Nov 20, 10:05" in row  # 15:05 UTC shown in the course's zone (New York)
    new = row_of(html, invited)
    assert "Invited" in new and "$0.00" in new and "$50.00" in new and "never" in new
    assert f"course-row-{revoked.pk}" not in html and f"course-row-{prof.pk}" not in html
    assert "Lens: <strong>" in html and "hw3 Starting → Running" in html  # recent events
    assert f'ws-connect="/ws/courses/{course.pk}/"' in html


def test_the_section_filter_and_sorting_by_spend(client, course, prof):
    Section.objects.create(course=course, name="A")
    Section.objects.create(course=course, name="B")
    ann = MembershipFactory(course=course, name="Ann", section="A")
    bob = MembershipFactory(course=course, name="Bob", section="B")
    cat = MembershipFactory(course=course, name="Cat", section="A")
    ledger.adjustment_grant(membership=cat, amount=Decimal("9"), actor=None, note="x", key="c")
    client.force_login(prof.user)

    only_a = client.get(page(course, "?section=a")).content.decode()
    by_name = client.get(page(course)).content.decode()
    by_spend = client.get(page(course, "?section=A&sort=spend")).content.decode()

    assert f"course-row-{ann.pk}" in only_a and f"course-row-{cat.pk}" in only_a
    assert f"course-row-{bob.pk}" not in only_a
    assert by_name.index("Ann") < by_name.index("Bob") < by_name.index("Cat")
    assert by_spend.index(f"course-row-{cat.pk}") < by_spend.index(f"course-row-{ann.pk}")


def test_staff_see_the_page_students_get_403_outsiders_404(client, course, prof, student):
    for role in (Membership.Role.HEAD_TA, Membership.Role.TA):
        client.force_login(MembershipFactory(course=course, role=role).user)
        assert client.get(page(course)).status_code == 200
    client.force_login(prof.user)
    assert client.get(page(course)).status_code == 200

    client.force_login(student.user)
    assert client.get(page(course)).status_code == 403
    other_prof = MembershipFactory(role=Membership.Role.INSTRUCTOR)  # another course's staff
    client.force_login(other_prof.user)
    assert client.get(page(course)).status_code == 404
    client.force_login(MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                                         status=Membership.Status.REVOKED).user)
    assert client.get(page(course)).status_code == 404
    client.logout()
    assert client.get(page(course)).status_code == 302  # to sign-in


def test_staff_find_the_page_from_their_dashboard_students_do_not(client, course, prof, student):
    client.force_login(prof.user)
    assert f'href="/courses/{course.pk}/"' in client.get("/").content.decode()
    client.force_login(student.user)
    assert f'href="/courses/{course.pk}/"' not in client.get("/").content.decode()


@pytest.mark.parametrize("students", [5, 200])
def test_the_page_query_count_does_not_grow_with_the_class(
        client, course, approved, prof, students):
    Section.objects.create(course=course, name="A")
    account = cloud_account_default()
    members = [MembershipFactory(course=course, section="AB"[n % 2]) for n in range(students)]
    spaces = Workspace.objects.bulk_create(
        Workspace(owner=m, template=approved.template, cloud_account=account, name="hw",
                  instance_type="t3.medium", state=State.STOPPED, instance_id=f"i-{n}",
                  storage_usd_per_hour=Decimal("0.002"))
        for n, m in enumerate(members))
    WorkspaceEvent.objects.bulk_create(
        WorkspaceEvent(workspace=w, from_state=State.STOPPING, to_state=State.STOPPED,
                       at=datetime(2026, 11, 20, tzinfo=UTC)) for w in spaces)
    for n, m in enumerate(members):
        ledger.adjustment_grant(membership=m, amount=Decimal(n + 1), actor=None, note="x",
                                key=f"k{n}")
    client.force_login(prof.user)

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(page(course, "?sort=spend"))

    assert response.status_code == 200
    assert response.content.decode().count('<tr id="course-row-') == students
    # session, user, actor, students, workspaces, spend, latest events, sections,
    # pending requests, recent events, help queue counts
    assert len(ctx.captured_queries) == 11


def test_the_pending_approvals_count_links_to_the_course_s_requests(
        client, course, prof, student, other_student):
    from courses.models import Approval

    for member, slug in [(student, "gpu"), (other_student, "gpu"), (student, "big")]:
        Approval.objects.create(course=course, membership=member, kind="template",
                                template_slug=slug, reason="final project")
    Approval.objects.create(course=course, membership=other_student, kind="budget",
                            amount=Decimal("10"), reason="x", status=Approval.Status.DENIED)
    Approval.objects.create(course=CourseFactory(), membership=MembershipFactory(),
                            kind="template", template_slug="gpu", reason="elsewhere")
    client.force_login(prof.user)

    html = client.get(page(course)).content.decode()

    assert (f'<strong data-testid="pending-approvals"><a href="/courses/{course.pk}/approvals/">'
            '3</a></strong>') in html
    assert "Review requests" in html


# --- live ----------------------------------------------------------------------

live = pytest.mark.django_db(transaction=True)


async def _refused(path, cookie):
    comm = communicator(path, cookie)
    connected, code = await comm.connect()
    await comm.disconnect()
    return connected, code


@live
def test_the_live_feed_refuses_students_outsiders_and_anonymous_sockets(client, course, student):
    path = f"/ws/courses/{course.pk}/"
    outsider = MembershipFactory(course=CourseFactory(), role=Membership.Role.INSTRUCTOR)

    assert async_to_sync(_refused)(path, session_cookie(client, student)) == (False, 4403)
    assert async_to_sync(_refused)(path, session_cookie(client, outsider)) == (False, 4403)
    assert async_to_sync(_refused)(path, None) == (False, 4403)


async def _watch_a_state_change(path, cookie, change):
    comm = communicator(path, cookie)
    connected, _ = await comm.connect()
    assert connected
    await database_sync_to_async(change)()
    message = await comm.receive_from(timeout=5)
    await comm.disconnect()
    return message


@live
def test_staff_receive_the_student_s_new_row_when_a_workspace_changes_state(
        client, course, approved, prof, student):
    ws = workspace(student, approved.template, "hw3", State.STOPPED)
    cookie = session_cookie(client, prof)

    def start():
        workspace_transition(workspace=ws, to=State.PENDING, actor=student.user,
                             reason="start")

    html = async_to_sync(_watch_a_state_change)(f"/ws/courses/{course.pk}/", cookie, start)

    row = row_of(html, student)
    assert 'hx-swap-oob="true"' in row and "hw3: Starting" in row and "$50.00" in row
    assert f'id="course-events-{course.pk}"' in html
    assert f"{student.user.email}: <strong>" in html and "Stopped → Starting" in html


@live
def test_another_course_s_changes_are_not_sent(client, course, approved, prof):
    elsewhere = MembershipFactory(course=CourseFactory())
    ws = workspace(elsewhere, approved.template, "other", State.STOPPED)
    mine = workspace(MembershipFactory(course=course), approved.template, "mine", State.STOPPED)
    cookie = session_cookie(client, prof)

    def both():
        workspace_transition(workspace=ws, to=State.PENDING)
        workspace_transition(workspace=mine, to=State.PENDING)

    html = async_to_sync(_watch_a_state_change)(f"/ws/courses/{course.pk}/", cookie, both)

    assert "mine: Starting" in html and "other" not in html
