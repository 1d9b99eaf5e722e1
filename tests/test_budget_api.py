from decimal import Decimal

import pytest

from billing import ledger
from courses.models import Membership
from tests.factories import MembershipFactory


@pytest.fixture
def prof(course):
    return MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                             user__username="prof")


def test_a_member_reads_their_budget_and_ledger(client, student):
    ledger.adjustment_grant(membership=student, amount=Decimal("3"), actor=None, note="lab",
                            key="a")
    client.force_login(student.user)

    budget = client.get(f"/api/members/{student.pk}/budget/").json()
    lines = client.get(f"/api/members/{student.pk}/ledger/").json()

    assert budget == {"cap": "50.00", "spend": "3.000000", "committed": "3.000000",
                      "remaining": "47.000000", "percent": 6}
    assert [(line["kind"], line["amount"], line["note"]) for line in lines] == [
        ("adjustment", "3.000000", "lab")]


def test_only_instructors_change_caps_and_grant_adjustments(client, student, prof):
    client.force_login(student.user)
    assert client.post(f"/api/members/{student.pk}/cap/",
                       {"cap": "100", "reason": "please"}).status_code == 403

    client.force_login(prof.user)
    cap = client.post(f"/api/members/{student.pk}/cap/", {"cap": "30", "reason": "project",
                                                          "key": "c1"})
    credit = client.post(f"/api/members/{student.pk}/adjustments/",
                         {"amount": "-2.50", "reason": "outage", "key": "a1"})

    assert cap.status_code == 200 and cap.json()["cap"] == "30.00"
    assert credit.status_code == 201 and credit.json()["spend"] == "-2.500000"


def test_bad_budget_input_gets_field_errors(client, student, prof):
    client.force_login(prof.user)

    response = client.post(f"/api/members/{student.pk}/adjustments/", {"amount": "0"})

    assert response.status_code == 400
    assert response.json() == {"amount": ["An adjustment of $0 changes nothing."],
                               "reason": ["This field is required."]}


def test_another_course_s_member_is_not_found(client, student):
    outsider = MembershipFactory(user__username="out")
    client.force_login(outsider.user)

    assert client.get(f"/api/members/{student.pk}/budget/").status_code == 404
    assert client.get(f"/api/members/{student.pk}/ledger/").status_code == 404


def test_the_estimate_api_reproduces_the_seed_numbers(client, course, prices):
    from tests.factories import ApprovedTemplateFactory, TemplateFactory

    ApprovedTemplateFactory(course=course, template=TemplateFactory(
        slug="gpu-ml-workstation", instance_type="g4dn.xlarge"))
    member = MembershipFactory(course=course, user__username="alex", budget_cap=500)
    client.force_login(member.user)

    plan = client.get(f"/api/courses/{course.pk}/templates/gpu-ml-workstation/estimate/",
                      {"hours": "6", "sessions": "3"}).json()

    assert (plan["per_session"], plan["per_week"], plan["per_month"]) == (
        "3.16", "9.48", "37.92")
    bad = client.get(f"/api/courses/{course.pk}/templates/gpu-ml-workstation/estimate/",
                     {"hours": "0"})
    assert bad.status_code == 400 and "hours" in bad.json()


def test_the_estimate_page_shows_the_plan_and_field_errors(client, student, approved):
    client.force_login(student.user)
    url = f"/courses/{student.course_id}/templates/ml-cpu-student/estimate/"

    html = client.get(url, {"hours": "10", "sessions": "2"}).content.decode()
    assert "$0.42" in html and "$0.84" in html and "$3.36" in html
    assert "Ensure this value is greater than or equal to 0.25." in client.get(
        url, {"hours": "0", "sessions": "2"}).content.decode()
