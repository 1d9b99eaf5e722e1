"""Staff messages to a student: on the dashboard, unread until opened, emailed
once; who may write to whom; the API; an inbox whose query count does not grow."""


import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from courses import inbox, tasks
from courses.models import Membership, Message
from provisioning.models import Workspace
from provisioning.services import cloud_account_default
from tests.factories import CourseFactory, MembershipFactory

Role = Membership.Role


@pytest.fixture
def ta(course):
    return MembershipFactory(course=course, role=Role.TA, name="Priya Sharma",
                             user__username="priya")


def compose_url(member):
    return reverse("message-compose", args=[member.course_id, member.pk])


def send(ta, student, subject="Your GPU is idle", body="Please stop it when you are done.",
         **kwargs):
    return inbox.message_send(sender=ta, recipient=student, subject=subject, body=body, **kwargs)





def test_a_message_is_unread_on_the_dashboard_until_the_student_opens_it(
        client, ta, student, django_capture_on_commit_callbacks):
    client.force_login(ta.user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(compose_url(student), {"subject": "Your GPU is idle",
                                                      "body": "Please stop it."})
    assert response.status_code == 302
    message = Message.objects.get()
    client.force_login(student.user)

    before = client.get(reverse("home")).content.decode()
    opened = client.post(reverse("message-read", args=[message.pk]), HTTP_HX_REQUEST="true")
    after = client.get(reverse("home")).content.decode()

    assert "1 unread" in before and 'class="message unread"' in before
    assert "Your GPU is idle" in before and "from Priya Sharma" in before
    assert f'id="message-{message.pk}" class="message" open' in opened.content.decode()
    assert 'data-unread="0"' in after and "unread</span>" not in after
    assert f'id="message-{message.pk}" class="message"' in after


def test_opening_the_message_page_reads_it_and_others_get_404(client, ta, student,
                                                                other_student):
    message = send(ta, student)
    for outsider in (other_student, ta):
        client.force_login(outsider.user)
        assert client.get(reverse("message-open", args=[message.pk])).status_code == 404
    message.refresh_from_db()
    assert message.read_at is None

    client.force_login(student.user)
    response = client.get(reverse("message-open", args=[message.pk]))

    assert response.status_code == 200 and "Please stop it when you are done." in \
        response.content.decode()
    message.refresh_from_db()
    assert message.read_at is not None


def test_the_email_goes_out_once_even_if_the_task_runs_twice(
        ta, student, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        message = send(ta, student)
    tasks.message_email_send_task.delay(message.pk)
    tasks.message_email_send_task.delay(message.pk)

    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == [student.email] and mail.reply_to == [ta.user.email]
    assert mail.subject == "[CS229] Your GPU is idle"
    assert "Priya Sharma wrote to you" in mail.body and f"/messages/{message.pk}/" in mail.body
    message.refresh_from_db()
    assert message.emailed_at is not None


def test_a_failed_email_is_retried_rather_than_marked_sent(ta, student, monkeypatch):
    message = send(ta, student)

    def down(self, *args, **kwargs):
        raise OSError("SMTP down")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", down)
    with pytest.raises(OSError):
        inbox.message_email_send(message_id=message.pk)

    message.refresh_from_db()
    assert message.emailed_at is None


def test_a_message_can_be_about_one_of_the_student_s_workspaces_only(client, ta, student,
                                                                      approved, other_student):
    account = cloud_account_default()
    mine = Workspace.objects.create(owner=student, template=approved.template,
                                    cloud_account=account, name="hw3", instance_type="t3.medium")
    theirs = Workspace.objects.create(owner=other_student, template=approved.template,
                                      cloud_account=account, name="x", instance_type="t3.medium")
    client.force_login(ta.user)

    refused = client.post(compose_url(student), {"subject": "s", "body": "b",
                                                 "workspace": theirs.pk})
    sent = client.post(compose_url(student), {"subject": "About hw3", "body": "b",
                                              "workspace": mine.pk})

    assert refused.status_code == 400 and 'data-field="workspace"' in refused.content.decode()
    assert sent.status_code == 302
    message = Message.objects.get()
    assert (message.workspace_id, message.workspace_name) == (mine.pk, "hw3")


def test_empty_subject_and_body_are_shown_next_to_their_fields(client, ta, student):
    client.force_login(ta.user)

    response = client.post(compose_url(student), {"subject": " ", "body": ""})

    html = response.content.decode()
    assert response.status_code == 400
    assert 'data-field="subject"' in html and 'data-field="body"' in html
    assert not Message.objects.exists()


@pytest.mark.parametrize("role", [Role.INSTRUCTOR, Role.HEAD_TA, Role.TA])
def test_every_staff_role_may_write_to_a_student(client, course, student, role):
    staff = MembershipFactory(course=course, role=role)
    client.force_login(staff.user)

    assert client.get(compose_url(student)).status_code == 200


def test_students_outsiders_and_other_courses_staff_may_not_write(client, course, student,
                                                                  other_student, ta):
    elsewhere = MembershipFactory(course=CourseFactory(), role=Role.INSTRUCTOR)
    cases = [(other_student, student, 403),  # student to student
             (ta, MembershipFactory(course=course, role=Role.TA), 403),  # to staff
             (elsewhere, student, 404)]  # another course's instructor
    for sender, recipient, code in cases:
        client.force_login(sender.user)
        assert client.get(compose_url(recipient)).status_code == code
        assert client.post(compose_url(recipient), {"subject": "s", "body": "b"}) \
            .status_code == code
    assert not Message.objects.exists()


def test_the_course_page_links_each_student_to_the_compose_form(client, ta, student):
    client.force_login(ta.user)

    html = client.get(reverse("course-page", args=[student.course_id])).content.decode()

    assert compose_url(student) in html


# --- API -----------------------------------------------------------------------


def test_the_api_lists_my_messages_and_marks_one_read(client, ta, student, other_student):
    first = send(ta, student, subject="one")
    send(ta, student, subject="two")
    send(ta, other_student, subject="not mine")
    client.force_login(student.user)

    listed = client.get(reverse("api-messages"), {"unread": "true"}).json()
    read = client.post(reverse("api-message-read", args=[first.pk]))
    unread = client.get(reverse("api-messages"), {"unread": "true"}).json()

    assert [m["subject"] for m in listed["results"]] == ["two", "one"]
    assert read.status_code == 200 and read.json()["unread"] is False
    assert [m["subject"] for m in unread["results"]] == ["two"]
    client.force_login(other_student.user)
    assert client.post(reverse("api-message-read", args=[first.pk])).status_code == 404


def test_the_api_sends_with_field_errors_and_refuses_students(client, ta, student,
                                                              other_student):
    url = reverse("api-member-messages", args=[student.course_id, student.pk])
    client.force_login(ta.user)

    bad = client.post(url, {"subject": "", "body": "b"}, content_type="application/json")
    good = client.post(url, {"subject": "Hi", "body": "b"}, content_type="application/json")
    client.force_login(other_student.user)
    refused = client.post(url, {"subject": "Hi", "body": "b"}, content_type="application/json")

    assert bad.status_code == 400 and "subject" in bad.json()
    assert good.status_code == 201 and good.json()["sender_name"] == "Priya Sharma"
    assert refused.status_code == 403


# --- the inbox's cost ------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 30])
def test_the_dashboard_query_count_does_not_grow_with_messages(client, ta, student, approved,
                                                               count):
    Message.objects.bulk_create(
        Message(course=student.course, recipient=student, sender=ta.user, sender_name="Priya",
                subject=f"note {n}", body="b") for n in range(count))
    client.force_login(student.user)

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("home"))

    assert response.status_code == 200
    html = response.content.decode()
    assert f"{count} unread" in html
    assert html.count('class="message unread"') == min(count, inbox.INBOX_SHOWN)
    # the same as tests/test_dashboard.py: the inbox is one query
    assert len(ctx.captured_queries) == 16  # requests; no approvals' prices without workspaces


def test_unread_messages_are_never_hidden_behind_read_ones(ta, student):
    old = send(ta, student, subject="old, unread")
    for n in range(inbox.INBOX_SHOWN + 5):
        inbox.message_read(message=send(ta, student, subject=f"read {n}"))

    shown = inbox.inboxes_for(membership_ids=[student.pk])[student.pk]

    assert shown.unread == 1 and shown.messages[0].pk == old.pk
    assert len(shown.messages) == inbox.INBOX_SHOWN
