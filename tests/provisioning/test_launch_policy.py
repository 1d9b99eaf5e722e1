import pytest
from django.urls import reverse

from provisioning.models import Workspace
from tests.factories import PASSWORD, ApprovedTemplateFactory, TemplateFactory


@pytest.fixture
def gpu(course, prices):
    """Exists, but the course did not approve it."""
    return TemplateFactory(slug="gpu-ml-workstation", name="GPU", instance_type="g4dn.xlarge")


def signed_in(client, membership):
    client.login(username=membership.user.username, password=PASSWORD)
    return client


def test_the_page_refuses_an_unapproved_template_naming_what_is_approved_and_its_cost(
        client, student, approved, gpu):
    signed_in(client, student)

    response = client.post(reverse("workspace-launch", args=[student.course_id]),
                           {"template": "gpu-ml-workstation", "name": "big"},
                           HTTP_HX_REQUEST="true")

    assert response.status_code == 403
    text = response.content.decode()
    assert "gpu-ml-workstation" in text and "is not approved" in text
    assert "ml-cpu-student (t3.medium, $0.0416/hour, $1.00/day)" in text
    assert not Workspace.objects.exists()


def test_the_api_refuses_an_unapproved_template_with_403_and_a_field_message(
        client, student, approved, gpu):
    signed_in(client, student)

    response = client.post("/api/workspaces/", {"course": student.course_id,
                                                "template": "gpu-ml-workstation", "name": "x"},
                           content_type="application/json")

    assert response.status_code == 403
    body = response.json()
    assert "ml-cpu-student" in body["detail"] and "$0.0416/hour" in body["detail"]
    assert body["template"] == [body["detail"]]
    assert not Workspace.objects.exists()


def test_a_template_that_needs_approval_is_refused_until_approved(client, student, course, prices):
    ApprovedTemplateFactory(course=course, requires_approval=True, note="final project only",
                            template=TemplateFactory(slug="ml-final-project",
                                                     instance_type="t3.large"))
    signed_in(client, student)

    response = client.post("/api/workspaces/", {"course": course.pk,
                                                "template": "ml-final-project", "name": "fp"})

    assert response.status_code == 403
    assert "needs an instructor's approval" in response.json()["detail"]
    assert "final project only" in response.json()["detail"]


def test_a_type_without_a_price_is_refused_never_priced_at_zero(client, student, course, prices):
    ApprovedTemplateFactory(course=course, template=TemplateFactory(
        slug="exotic", instance_type="x2iedn.32xlarge"))
    signed_in(client, student)

    response = client.post("/api/workspaces/", {"course": course.pk, "template": "exotic",
                                                "name": "e"})

    assert response.status_code == 409
    assert "no on-demand price for x2iedn.32xlarge" in response.json()["detail"]


def test_the_course_limit_on_concurrent_workspaces_is_enforced(client, student, approved):
    student.course.max_concurrent_workspaces = 1
    student.course.save()
    signed_in(client, student)

    first = client.post("/api/workspaces/", {"course": student.course_id,
                                             "template": "ml-cpu-student", "name": "one"})
    second = client.post("/api/workspaces/", {"course": student.course_id,
                                              "template": "ml-cpu-student", "name": "two"})

    assert first.status_code == 201
    assert second.status_code == 409
    assert "allows 1 at a time" in second.json()["detail"]


def test_a_duplicate_name_is_a_field_error(client, student, approved):
    signed_in(client, student)
    data = {"course": student.course_id, "template": "ml-cpu-student", "name": "hw"}

    assert client.post("/api/workspaces/", data).status_code == 201
    response = client.post("/api/workspaces/", data)

    assert response.status_code == 409
    assert "already have a workspace named 'hw'" in response.json()["name"][0]


def test_someone_outside_the_course_cannot_launch_in_it(client, approved, other_student):
    from tests.factories import MembershipFactory

    outsider = MembershipFactory(user__username="outsider")  # another course
    signed_in(client, outsider)

    page = client.post(reverse("workspace-launch", args=[approved.course_id]),
                       {"template": "ml-cpu-student", "name": "x"})
    api = client.post("/api/workspaces/", {"course": approved.course_id,
                                           "template": "ml-cpu-student", "name": "x"})

    assert page.status_code == 404 and api.status_code == 404
    assert not Workspace.objects.exists()


def test_a_revoked_member_cannot_launch(client, student, approved):
    student.status = "revoked"
    student.save()
    signed_in(client, student)

    response = client.post("/api/workspaces/", {"course": student.course_id,
                                                "template": "ml-cpu-student", "name": "x"})

    assert response.status_code == 404
