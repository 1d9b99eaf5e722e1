"""Per-object security: student B cannot see or touch student A's workspace."""

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from courses.models import Membership
from provisioning.models import Workspace
from provisioning.services import cloud_account_default
from provisioning.states import State
from tests.factories import PASSWORD, MembershipFactory, TemplateFactory


@pytest.fixture
def a_workspace(student, approved):
    return Workspace.objects.create(owner=student, template=approved.template, name="a-ws",
                                    cloud_account=cloud_account_default(),
                                    instance_type="t3.medium", state=State.RUNNING,
                                    instance_id="i-0123456789abcdef0")


def login(client, membership):
    assert client.login(username=membership.user.username, password=PASSWORD)


def test_student_b_gets_404_for_a_s_workspace_page_and_api(client, a_workspace, other_student):
    login(client, other_student)

    assert client.get(reverse("workspace-detail", args=[a_workspace.pk])).status_code == 404
    assert client.get(f"/api/workspaces/{a_workspace.pk}/").status_code == 404
    assert client.get("/api/workspaces/").json()["results"] == []


def test_student_b_cannot_stop_a_s_workspace_by_page_or_api(client, a_workspace, other_student):
    login(client, other_student)

    page = client.post(reverse("workspace-stop", args=[a_workspace.pk]), HTTP_HX_REQUEST="true")
    api = client.post(f"/api/workspaces/{a_workspace.pk}/stop/")

    assert (page.status_code, api.status_code) == (404, 404)
    a_workspace.refresh_from_db()
    assert a_workspace.state == State.RUNNING


def test_the_owner_sees_their_workspace_and_its_history(client, a_workspace, student):
    login(client, student)

    page = client.get(reverse("workspace-detail", args=[a_workspace.pk]))
    api = client.get(f"/api/workspaces/{a_workspace.pk}/")

    assert page.status_code == 200 and "i-0123456789abcdef0" in page.content.decode()
    assert api.json()["name"] == "a-ws" and api.json()["events"] == []


def test_a_ta_sees_the_course_s_workspaces_read_only(client, a_workspace, course):
    ta = MembershipFactory(course=course, role=Membership.Role.TA, user__username="priya")
    login(client, ta)

    assert client.get(f"/api/workspaces/{a_workspace.pk}/").status_code == 200
    assert [w["name"] for w in client.get("/api/workspaces/").json()["results"]] == ["a-ws"]
    assert client.post(f"/api/workspaces/{a_workspace.pk}/stop/").status_code == 403


def test_a_head_ta_may_stop_a_student_s_workspace(client, a_workspace, course,
                                                  django_capture_on_commit_callbacks):
    head = MembershipFactory(course=course, role=Membership.Role.HEAD_TA, user__username="alex")
    login(client, head)

    response = client.post(f"/api/workspaces/{a_workspace.pk}/stop/")

    assert response.status_code == 202
    a_workspace.refresh_from_db()
    assert a_workspace.state == State.STOPPING


def test_staff_of_another_course_see_nothing(client, a_workspace):
    elsewhere = MembershipFactory(role=Membership.Role.INSTRUCTOR, user__username="prof2")
    login(client, elsewhere)

    assert client.get(f"/api/workspaces/{a_workspace.pk}/").status_code == 404
    assert client.get("/api/workspaces/").json()["results"] == []


def test_anonymous_requests_are_sent_to_sign_in_or_refused(client, a_workspace):
    page = client.get(reverse("workspace-detail", args=[a_workspace.pk]))

    assert page.status_code == 302 and "/accounts/login/" in page["Location"]
    assert client.get("/api/workspaces/").status_code in (401, 403)


def test_token_auth_works_for_the_api(client, a_workspace, student):
    token = Token.objects.create(user=student.user)

    response = client.get("/api/workspaces/", HTTP_AUTHORIZATION=f"Token {token.key}")

    assert [w["id"] for w in response.json()["results"]] == [a_workspace.pk]


def test_a_stop_of_a_stopped_workspace_is_a_clear_conflict(client, a_workspace, student):
    Workspace.objects.filter(pk=a_workspace.pk).update(state=State.STOPPED)
    login(client, student)

    response = client.post(f"/api/workspaces/{a_workspace.pk}/stop/")

    assert response.status_code == 409
    assert "Only a running workspace can be stopped" in response.json()["detail"]


def test_course_templates_api_lists_prices_to_members_only(client, approved, student, prices):
    TemplateFactory(slug="gpu", instance_type="g4dn.xlarge")  # not approved: not listed
    login(client, student)

    response = client.get(f"/api/courses/{student.course_id}/templates/")

    assert response.json() == [{
        "slug": "ml-cpu-student", "name": "ML CPU workspace", "description": "",
        "instance_type": "t3.medium", "usd_per_hour": "0.0416", "usd_per_day": "1.00",
        "spot_allowed": False, "spot_usd_per_hour": None, "hibernation": False,
        "requires_approval": False, "note": ""}]
    client.logout()
    login(client, MembershipFactory(user__username="stranger"))
    assert client.get(f"/api/courses/{student.course_id}/templates/").status_code == 404


def test_a_user_makes_and_replaces_their_own_api_token(client, student):
    login(client, student)

    client.post("/account/api-token/")
    first = Token.objects.get(user=student.user).key
    client.post("/account/api-token/")
    second = Token.objects.get(user=student.user).key

    assert first != second
    assert second in client.get("/account/api-token/").content.decode()
    client.logout()
    assert client.get("/api/workspaces/", HTTP_AUTHORIZATION=f"Token {second}").status_code == 200
    assert client.get("/api/workspaces/", HTTP_AUTHORIZATION=f"Token {first}").status_code == 401
