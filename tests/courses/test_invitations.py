from django.urls import reverse

from courses.models import Membership
from tests.factories import CourseFactory, MembershipFactory


def test_a_person_who_signs_up_with_an_invited_email_joins_the_course(client, db):
    course = CourseFactory(code="CS101")
    MembershipFactory(course=course, user=None, email="New.Student@uni.example.edu",
                      status=Membership.Status.INVITED)

    response = client.post(reverse("account_signup"), {
        "email": "new.student@uni.example.edu", "password1": "a-long-pass-phrase-1",
        "password2": "a-long-pass-phrase-1"})

    assert response.status_code == 302
    membership = Membership.objects.get(course=course)
    assert membership.status == Membership.Status.ACTIVE
    assert membership.user.email == "new.student@uni.example.edu"
    assert "CS101" in client.get(reverse("home")).content.decode()


def test_a_revoked_invitation_is_not_revived_at_sign_in(client, db):
    course = CourseFactory()
    MembershipFactory(course=course, user=None, email="gone@uni.example.edu",
                      status=Membership.Status.REVOKED)

    client.post(reverse("account_signup"), {"email": "gone@uni.example.edu",
                                            "password1": "a-long-pass-phrase-1",
                                            "password2": "a-long-pass-phrase-1"})

    membership = Membership.objects.get(course=course)
    assert membership.status == Membership.Status.REVOKED and membership.user is None
