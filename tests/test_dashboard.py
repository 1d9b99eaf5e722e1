import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from provisioning.models import Workspace
from provisioning.services import cloud_account_default
from provisioning.states import State
from tests.factories import PASSWORD


def make_workspaces(owner, template, count):
    account = cloud_account_default()
    Workspace.objects.bulk_create(
        Workspace(owner=owner, template=template, cloud_account=account, name=f"ws-{i}",
                  instance_type=template.instance_type,
                  state=State.RUNNING if i % 2 else State.STOPPED)
        for i in range(count))


def dashboard_queries(client):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("home"))
    assert response.status_code == 200
    return len(ctx.captured_queries), response


@pytest.mark.parametrize("count", [1, 20])
def test_the_dashboard_query_count_does_not_grow_with_workspaces(client, student, approved, count):
    make_workspaces(student, approved.template, count)
    client.login(username=student.user.username, password=PASSWORD)

    queries, response = dashboard_queries(client)

    # session, user, memberships, course regions, approvals, prices ×2, workspaces,
    # the member's money (latest alert, spend, committed: spend + open holds),
    # the user's and their groups' permissions (may they create courses?), the inbox
    # (messages with their unread count, one query), the student's help request and
    # the member's requests (outcomes not yet seen, templates approved for them)
    assert queries == 17
    assert response.content.decode().count('class="ws state-') == count


def test_the_dashboard_shows_approved_templates_with_hourly_and_daily_cost(
        client, student, approved):
    client.login(username=student.user.username, password=PASSWORD)

    html = client.get(reverse("home")).content.decode()

    assert "Machine Learning" in html
    assert "ml-cpu-student" in html and "$0.0416" in html and "$1.00" in html
    assert f'ws-connect="/ws/members/{student.pk}/"' in html


def test_a_signed_out_visitor_sees_the_landing_page(client, db):
    html = client.get(reverse("home")).content.decode()

    assert "Sign in" in html


def test_launching_from_the_page_returns_the_new_card(client, student, approved):
    client.login(username=student.user.username, password=PASSWORD)

    response = client.post(reverse("workspace-launch", args=[student.course_id]),
                           {"template": "ml-cpu-student", "name": "hw2"}, HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert response.status_code == 200
    assert "Launching hw2" in html
    assert 'data-state="requested"' in html and 'hx-swap-oob="true"' in html


def test_the_launch_form_starts_on_the_cheapest_template_the_student_may_launch_now(
        client, student, prices):
    from tests.factories import ApprovedTemplateFactory, TemplateFactory

    course = student.course
    for slug, kind, extra in [("a-gpu-pool", "g4dn.xlarge", {"capacity": 1}),
                              ("b-final", "t3.small", {"requires_approval": True}),
                              ("c-large", "t3.large", {}), ("d-medium", "t3.medium", {})]:
        ApprovedTemplateFactory(course=course, template=TemplateFactory(
            slug=slug, name=slug, instance_type=kind), **extra)
    client.force_login(student.user)

    html = client.get(reverse("home")).content.decode()

    assert html.count(" checked>") == 1
    assert f'value="d-medium" id="t-{student.pk}-d-medium" checked>' in html
