"""The roster: sections, adding people, CSV import with preview, invitations, revoking."""

import base64
import re

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from courses import roster
from courses.models import Membership, Section
from courses.roster import ImportRefused, ImportStale, RowError
from provisioning.models import Workspace
from provisioning.services import workspace_launch
from provisioning.states import State
from tests.factories import CourseFactory, MembershipFactory

Role, Status = Membership.Role, Membership.Status


@pytest.fixture
def sections(course):
    return [Section.objects.create(course=course, name=n) for n in ("A", "B", "Lab 2")]


@pytest.fixture
def prof(course, sections):
    return MembershipFactory(course=course, role=Role.INSTRUCTOR, user__username="prof",
                             user__first_name="Jennifer", user__last_name="Martinez",
                             name="Dr. Jennifer Martinez")


@pytest.fixture
def head_ta(course):
    return MembershipFactory(course=course, role=Role.HEAD_TA, user__username="alex")


@pytest.fixture
def ta(course):
    return MembershipFactory(course=course, role=Role.TA, user__username="priya")


def csv_bytes(lines, header="email,name,section"):
    return ("\n".join([header, *lines]) + "\n").encode()


def class_of(n=50):
    return [f"s{i}@uni.example.edu,Student {i},{'AB'[i % 2]}" for i in range(1, n + 1)]


def page(course):
    return reverse("course-roster", args=[course.pk])


def upload(client, course, data, name="roster.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(reverse("roster-import-preview", args=[course.pk]),
                       {"file": SimpleUploadedFile(name, data, content_type="text/csv")})


def commit(client, course, response):
    html = response.content.decode()
    data = re.search(r'name="data" value="([^"]*)"', html).group(1)
    digest = re.search(r'name="digest" value="([^"]*)"', html).group(1)
    return client.post(reverse("roster-import-commit", args=[course.pk]),
                       {"data": data, "digest": digest})


def students(course):
    return Membership.objects.filter(course=course, role=Role.STUDENT)


# --- CSV import ------------------------------------------------------------


def test_a_50_row_file_with_3_bad_rows_imports_nothing_and_names_each_error(
        client, course, prof, django_capture_on_commit_callbacks):
    lines = class_of(50)
    lines[9] = "not-an-email,Student 10,A"  # line 11
    lines[24] = "S4@uni.example.edu,Student 4 again,B"  # line 26, same as line 5
    lines[38] = "s39@uni.example.edu,Student 39,C"  # line 40
    data = csv_bytes(lines)
    client.force_login(prof.user)

    response = upload(client, course, data)

    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing can be imported until 3 errors are fixed." in html
    assert 'name="data"' not in html  # no import button
    expected = [
        RowError(11, "email", "“not-an-email” is not a valid email address."),
        RowError(26, "email", "S4@uni.example.edu is already on row 5."),
        RowError(40, "section", "Section “C” does not exist in CS229 (it has A, B, Lab 2)."),
    ]
    for error in expected:
        assert f"Row {error.row}, {error.field}: {error.message}" in html
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ImportRefused) as caught:
        roster.roster_import_commit(course=course, actor=prof, data=data)
    assert caught.value.preview.errors == expected
    assert not students(course).exists()
    assert mail.outbox == []


def test_a_clean_50_row_file_makes_50_invited_members_and_emails_each(
        client, course, prof, django_capture_on_commit_callbacks):
    client.force_login(prof.user)
    preview = upload(client, course, csv_bytes(class_of(50)))
    assert preview.status_code == 200
    assert "Import 50 rows and send 50 invitations" in preview.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = commit(client, course, preview)

    assert response.status_code == 302
    assert students(course).count() == 50
    s7 = students(course).get(email="s7@uni.example.edu")
    assert (s7.name, s7.section, s7.status, s7.invited_by) == (
        "Student 7", "B", Status.INVITED, prof.user)
    assert len(mail.outbox) == 50
    assert Membership.objects.get(pk=s7.pk).invitation_sent_at is not None
    flash = client.get(page(course)).content.decode()
    assert "50 invited, 0 updated, 0 unchanged" in flash


def test_re_importing_the_same_file_changes_nothing(
        client, course, prof, django_capture_on_commit_callbacks):
    data = csv_bytes(class_of(50))
    with django_capture_on_commit_callbacks(execute=True):
        roster.roster_import_commit(course=course, actor=prof, data=data)
    before = list(students(course).order_by("pk").values())
    mail.outbox.clear()

    preview = roster.roster_import_preview(course=course, actor=prof, data=data)
    with django_capture_on_commit_callbacks(execute=True):
        result = roster.roster_import_commit(course=course, actor=prof, data=data)

    assert preview.counts["unchanged"] == 50 and preview.ok
    assert (result.created, result.updated, result.unchanged) == (0, 0, 50)
    assert list(students(course).order_by("pk").values()) == before
    assert mail.outbox == []


def test_existing_members_are_updated_but_never_change_role_by_import(course, prof):
    MembershipFactory(course=course, email="ann@uni.example.edu", user=None, name="Ann",
                      section="A", status=Status.ACTIVE)
    MembershipFactory(course=course, email="ta@uni.example.edu", user=None, role=Role.TA)
    data = csv_bytes(["ann@uni.example.edu,Ann Lee,b,",
                      "ta@uni.example.edu,,,student"], header="email,name,section,role")

    preview = roster.roster_import_preview(course=course, actor=prof, data=data)

    ann, ta = preview.rows
    assert (ann.outcome, ann.changes) == ("changed", ["name “Ann” → “Ann Lee”",
                                                      "section “A” → “B”"])
    assert ta.errors == [RowError(3, "role", "ta@uni.example.edu is already in the course as "
                                             "TA; change roles on the roster page.")]


def test_a_messy_file_is_read_bom_blank_lines_spaces_crlf_and_header_case(course, prof):
    data = ("\ufeff Email , NAME ,Section,Role\r\n\r\n  a@uni.example.edu ,  Ann   Lee ,"
            " lab 2 , Head TA \r\n,,,\r\nb@uni.example.edu,Bo,,\r\n").encode()

    preview = roster.roster_import_preview(course=course, actor=prof, data=data)

    assert preview.ok, preview.errors
    a, b = preview.rows
    assert (a.row, a.email, a.name, a.section, a.role) == (3, "a@uni.example.edu", "Ann Lee",
                                                           "Lab 2", Role.HEAD_TA)
    assert (b.row, b.section, b.role) == (5, "", Role.STUDENT)


@pytest.mark.parametrize("data, message", [
    (b"", "The file is empty"),
    (b"email,name,section\n\n", "The file has a header but no rows under it."),
    (b"a@uni.example.edu,Ann,A\n", "It looks like a data row: add the header line first."),
    (b"mail,fullname,group\nx@y.edu,X,A\n",
     "The first line must be the header email,name,section (role optional); line 1 is "
     "“mail,fullname,group”. Unknown columns “mail”, “fullname”, “group”."),
    (b"name,section\nAnn,A\n", "There is no “email” column."),
    (b"email,email\na@b.edu,a@b.edu\n", "Column “email” appears twice."),
    ("email,name\nj@uni.example.edu,José\n".encode("latin-1"),
     "The file is not UTF-8 text (line 2 has bytes that are not UTF-8)."),
])
def test_a_file_that_cannot_be_read_says_why(course, prof, data, message):
    preview = roster.roster_import_preview(course=course, actor=prof, data=data)

    assert not preview.ok and message in preview.file_error


def test_a_huge_file_is_refused_with_the_limit(client, course, prof):
    too_many = csv_bytes([f"p{i}@uni.example.edu,P,A" for i in range(roster.MAX_ROWS + 1)])
    preview = roster.roster_import_preview(course=course, actor=prof, data=too_many)
    assert preview.file_error == ("The file has more than 5,000 rows; Lens imports at most "
                                  "5,000 at a time. Split it into smaller files.")

    client.force_login(prof.user)
    response = upload(client, course, b"email\n" + b"x" * roster.MAX_BYTES)
    assert response.status_code == 400
    assert "Lens imports at most 1 MB and 5,000 rows at a time." in response.content.decode()


def test_unknown_roles_and_roles_above_the_importer_are_row_errors(course, head_ta, sections):
    data = csv_bytes(["a@uni.example.edu,A,A,professor", "b@uni.example.edu,B,A,instructor",
                      "c@uni.example.edu,C,A,TA", ",D,A,student",
                      'e@uni.example.edu,"Lee, E",A,student,extra'],
                     header="email,name,section,role")

    preview = roster.roster_import_preview(course=course, actor=head_ta, data=data)

    assert preview.errors == [
        RowError(2, "role", "“professor” is not a role; use instructor, head_ta, ta or "
                            "student."),
        RowError(3, "role", "Only instructors may add or change instructors and head TAs."),
        RowError(5, "email", "Email is missing."),
        RowError(6, "row", "It has 5 values but the header has 4 columns (put quotes around "
                           "a value with a comma)."),
    ]
    assert preview.rows[2].outcome == "new" and preview.rows[2].role == Role.TA


def test_a_stale_preview_cannot_sneak_rows_in(
        client, course, prof, sections, django_capture_on_commit_callbacks):
    client.force_login(prof.user)
    preview = upload(client, course, csv_bytes(class_of(10)))
    assert preview.status_code == 200
    Section.objects.filter(name="B").delete()  # someone removes a section meanwhile

    response = commit(client, course, preview)

    assert response.status_code == 400
    assert "Section “B” does not exist in CS229 (it has A, Lab 2)." in response.content.decode()
    assert not students(course).exists()


def test_a_commit_refuses_when_the_roster_changed_since_the_preview(course, prof):
    data = csv_bytes(class_of(3))
    digest = roster.roster_import_preview(course=course, actor=prof, data=data).digest
    roster.membership_invite(course=course, actor=prof, email="s2@uni.example.edu",
                             section="A")

    with pytest.raises(ImportStale):
        roster.roster_import_commit(course=course, actor=prof, data=data,
                                    expected_digest=digest)

    assert students(course).count() == 1


# --- one person, invitations ------------------------------------------------


def test_adding_a_person_shows_field_errors_and_keeps_the_input(client, course, prof):
    client.force_login(prof.user)
    MembershipFactory(course=course, email="taken@uni.example.edu", user=None)

    response = client.post(reverse("roster-add", args=[course.pk]), {
        "email": "taken@uni.example.edu", "name": "Typed Name", "section": "Z",
        "role": Role.STUDENT})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Select a valid choice. Z is not one of the available choices." in html
    assert 'value="Typed Name"' in html

    response = client.post(reverse("roster-add", args=[course.pk]), {
        "email": "taken@uni.example.edu", "name": "Typed Name", "section": "A",
        "role": Role.STUDENT})
    assert response.status_code == 400
    assert "taken@uni.example.edu is already on the roster (active)." in \
        response.content.decode()


def test_the_invitation_email_names_the_course_the_inviter_and_the_sign_in_link(
        client, course, prof, django_capture_on_commit_callbacks):
    client.force_login(prof.user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("roster-add", args=[course.pk]), {
            "email": "New.Person@uni.example.edu", "name": "New Person", "section": "Lab 2",
            "role": Role.TA})

    assert response.status_code == 302
    [message] = mail.outbox
    assert message.to == ["New.Person@uni.example.edu"]
    assert message.subject == "You are invited to Machine Learning (CS229) on Lens"
    assert "Dr. Jennifer Martinez (prof@uni.example.edu) invited you" in message.body
    assert "as TA in section Lab 2" in message.body
    assert "http://127.0.0.1:8000/accounts/login/" in message.body
    assert message.reply_to == ["prof@uni.example.edu"]


def test_an_invited_person_joins_when_they_sign_up_with_that_email(
        client, course, prof, django_capture_on_commit_callbacks):
    roster.membership_invite(course=course, actor=prof, email="newbie@uni.example.edu")

    client.post(reverse("account_signup"), {"email": "newbie@uni.example.edu",
                                            "password1": "a-long-pass-phrase-1",
                                            "password2": "a-long-pass-phrase-1"})

    member = Membership.objects.get(email="newbie@uni.example.edu")
    assert member.status == Status.ACTIVE and member.user.email == "newbie@uni.example.edu"


def test_the_invitation_goes_out_once_even_if_the_task_runs_twice(course, prof):
    member = roster.membership_invite(course=course, actor=prof, email="x@uni.example.edu")

    assert roster.invitation_send(membership_id=member.pk) is True
    assert roster.invitation_send(membership_id=member.pk) is False
    assert len(mail.outbox) == 1


def test_re_inviting_a_revoked_member_sends_a_new_invitation(
        course, prof, student, django_capture_on_commit_callbacks):
    roster.membership_revoke(membership=student, actor=prof)

    with django_capture_on_commit_callbacks(execute=True):
        member = roster.membership_reinvite(membership=student, actor=prof)

    assert member.status == Status.INVITED and len(mail.outbox) == 1
    with pytest.raises(roster.RosterError, match="has already joined"):
        roster.membership_reinvite(membership=prof, actor=prof)


# --- revoking ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_revoking_a_student_stops_their_running_workspace_and_shuts_them_out(
        client, course, prof, student, approved):
    workspace = workspace_launch(membership=student, template_slug="ml-cpu-student",
                                 name="hw1", actor=student.user)
    workspace.refresh_from_db()
    assert workspace.state == State.RUNNING
    client.force_login(prof.user)

    response = client.post(reverse("roster-revoke", args=[course.pk, student.pk]))

    assert response.status_code == 302
    workspace.refresh_from_db()
    assert workspace.state in {State.STOPPING, State.STOPPED}
    assert workspace.stop_reason == Workspace.StopReason.REVOKED
    student.refresh_from_db()
    assert student.status == Status.REVOKED
    client.force_login(student.user)
    assert course.title not in client.get("/").content.decode()
    assert client.get(f"/workspaces/{workspace.pk}/").status_code == 404


def test_a_head_ta_cannot_revoke_an_instructor_and_nobody_revokes_themselves(
        client, course, prof, head_ta):
    with pytest.raises(roster.RosterError, match="Only instructors may add or change instructors"):
        roster.membership_revoke(membership=prof, actor=head_ta)
    with pytest.raises(roster.RosterError, match="your own membership"):
        roster.membership_revoke(membership=prof, actor=prof)

    client.force_login(head_ta.user)
    client.post(reverse("roster-revoke", args=[course.pk, prof.pk]))
    prof.refresh_from_db()
    assert prof.status == Status.ACTIVE


# --- who may see and change the roster --------------------------------------


def test_staff_see_the_roster_students_get_403_and_outsiders_404(
        client, course, prof, ta, student):
    elsewhere = MembershipFactory(role=Role.INSTRUCTOR, user__username="elsewhere")
    add = reverse("roster-add", args=[course.pk])
    api = reverse("api-course-members", args=[course.pk])
    form = {"email": "x@uni.example.edu", "role": Role.STUDENT}

    client.force_login(prof.user)
    assert client.get(page(course)).status_code == 200
    assert client.get(api).status_code == 200
    client.force_login(ta.user)
    assert client.get(page(course)).status_code == 200
    assert "read-only for your role" in client.get(page(course)).content.decode()
    assert client.get(api).status_code == 200
    assert client.post(add, form).status_code == 403
    assert client.post(api, form).status_code == 403
    assert client.post(reverse("roster-revoke", args=[course.pk, student.pk])).status_code == 403
    client.force_login(student.user)
    assert client.get(page(course)).status_code == 403
    assert client.get(api).status_code == 403
    client.force_login(elsewhere.user)
    assert client.get(page(course)).status_code == 404
    assert client.get(api).status_code == 404
    assert client.post(add, form).status_code == 404
    assert not Membership.objects.filter(email="x@uni.example.edu").exists()


def test_a_member_of_another_course_cannot_be_reached_through_this_one(client, course, prof):
    stranger = MembershipFactory(user__username="stranger")

    client.force_login(prof.user)
    response = client.post(reverse("roster-revoke", args=[course.pk, stranger.pk]))
    api = client.post(reverse("api-member-revoke", args=[course.pk, stranger.pk]))

    assert (response.status_code, api.status_code) == (404, 404)
    stranger.refresh_from_db()
    assert stranger.status == Status.ACTIVE


def test_the_roster_filters_by_section_and_status(client, course, prof, sections):
    MembershipFactory(course=course, user=None, email="a1@uni.example.edu", section="A")
    MembershipFactory(course=course, user=None, email="b1@uni.example.edu", section="B")
    MembershipFactory(course=course, user=None, email="a2@uni.example.edu", section="A",
                      status=Status.INVITED)
    client.force_login(prof.user)

    html = client.get(page(course), {"section": "a", "status": "invited"}).content.decode()

    assert 'data-email="a2@uni.example.edu"' in html
    assert 'data-email="a1@uni.example.edu"' not in html
    assert 'data-email="b1@uni.example.edu"' not in html


@pytest.mark.parametrize("members", [5, 40])
def test_the_roster_page_query_count_does_not_grow_with_the_class(
        client, course, prof, members):
    for n in range(members):
        MembershipFactory(course=course, user__username=f"s{n}", section="AB"[n % 2],
                          invited_by=prof.user, status=[Status.ACTIVE, Status.INVITED][n % 2])
    client.force_login(prof.user)

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(page(course))

    assert response.status_code == 200
    assert response.content.decode().count("data-email=") == members + 1
    # session, user, actor with course, sections, members with inviter, status counts
    assert len(ctx.captured_queries) == 6


# --- API ---------------------------------------------------------------------


def test_the_api_adds_a_member_with_field_errors_then_lists_and_revokes(
        client, course, prof, django_capture_on_commit_callbacks):
    client.force_login(prof.user)
    url = reverse("api-course-members", args=[course.pk])

    bad = client.post(url, {"email": "nope", "section": "Z", "role": "dean"},
                      content_type="application/json")
    assert bad.status_code == 400
    assert bad.json() == {
        "email": ["“nope” is not a valid email address."],
        "role": ["“dean” is not a role; use instructor, head_ta, ta or student."],
        "section": ["Section “Z” does not exist in CS229 (it has A, B, Lab 2)."]}

    with django_capture_on_commit_callbacks(execute=True):
        made = client.post(url, {"email": "kim@uni.example.edu", "section": "b"},
                           content_type="application/json")
    assert made.status_code == 201
    assert (made.json()["section"], made.json()["status"]) == ("B", "invited")
    assert len(mail.outbox) == 1

    listed = client.get(url, {"section": "B"}).json()
    assert [m["email"] for m in listed["results"]] == ["kim@uni.example.edu"]

    revoked = client.post(reverse("api-member-revoke", args=[course.pk, made.json()["id"]]))
    assert revoked.json()["status"] == "revoked"


def test_the_api_previews_and_commits_an_import_all_or_nothing(client, course, prof):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(prof.user)
    preview_url = reverse("api-roster-import-preview", args=[course.pk])
    commit_url = reverse("api-roster-import-commit", args=[course.pk])
    bad = csv_bytes(["a@uni.example.edu,A,A", "a@uni.example.edu,A,B"])

    preview = client.post(preview_url, {"file": SimpleUploadedFile("r.csv", bad)}).json()
    assert preview["ok"] is False
    assert preview["errors"] == [{"row": 3, "field": "email",
                                  "message": "a@uni.example.edu is already on row 2."}]
    refused = client.post(commit_url, {"file": SimpleUploadedFile("r.csv", bad)})
    assert refused.status_code == 400 and not students(course).exists()

    good = csv_bytes(class_of(4))
    digest = client.post(preview_url, {"file": SimpleUploadedFile("r.csv", good)}).json()
    done = client.post(commit_url, {"file": SimpleUploadedFile("r.csv", good),
                                    "digest": digest["digest"]})
    assert done.status_code == 201 and done.json()["created"] == 4
    assert students(course).count() == 4


def test_the_roster_api_is_in_the_openapi_schema(client, prof):
    client.force_login(prof.user)
    schema = client.get(reverse("api-schema")).content.decode()

    for path in ("/api/courses/{course_id}/members/",
                 "/api/courses/{course_id}/members/{membership_id}/revoke/",
                 "/api/courses/{course_id}/roster/import/preview/",
                 "/api/courses/{course_id}/roster/import/commit/"):
        assert path in schema


def test_sections_are_unique_per_course_whatever_the_case(course, sections):
    with pytest.raises(roster.RosterError, match="Section “Lab 2” already exists."):
        roster.section_create(course=course, name="  LAB   2 ")
    other = CourseFactory()
    assert roster.section_create(course=other, name="lab 2").name == "lab 2"


def test_commit_data_round_trips_through_the_preview_page(client, course, prof):
    data = "email,name,section\r\nzoe@uni.example.edu,Zoë Müller,A\r\n".encode()
    client.force_login(prof.user)

    html = upload(client, course, data).content.decode()

    encoded = re.search(r'name="data" value="([^"]*)"', html).group(1)
    assert base64.b64decode(encoded) == data


def test_a_workspace_still_starting_when_its_owner_is_revoked_stops_once_it_runs(
        course, prof, student, approved, django_capture_on_commit_callbacks):
    from provisioning import tasks

    with django_capture_on_commit_callbacks(execute=False):
        workspace = workspace_launch(membership=student, template_slug="ml-cpu-student",
                                     name="hw1", actor=student.user)
    roster.membership_revoke(membership=student, actor=prof)

    with django_capture_on_commit_callbacks(execute=True):
        tasks.workspace_launch_task.delay(workspace.pk)

    workspace.refresh_from_db()
    assert workspace.state in {State.STOPPING, State.STOPPED}
    assert workspace.stop_reason == Workspace.StopReason.REVOKED
