"""Workshops: an access code, a time window with an extension, joining without a
roster, and the end sweep that takes access away again."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.utils import timezone

from courses import workshops
from courses.models import Course, Membership
from courses.tasks import workshops_end_task
from provisioning.models import Workspace
from provisioning.services import workspace_launch
from provisioning.states import State
from tests.factories import (
    ApprovedTemplateFactory,
    CourseFactory,
    MembershipFactory,
    TemplateFactory,
    UserFactory,
)

Role, Status = Membership.Role, Membership.Status
# Saturday Dec 5, 2026, 09:00 in New York (14:00 UTC), three hours, one more for the extension.
START = datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
DURING = START + timedelta(minutes=30)


def make_workshop(start=START, minutes=180, extension=60, **fields):
    course = CourseFactory(code=fields.pop("code", "GPU-WS"), title="GPU workshop",
                           kind=Course.Kind.WORKSHOP, access_code=workshops.access_code_new(),
                           workshop_starts_at=start, workshop_duration_minutes=minutes,
                           workshop_extension_minutes=extension,
                           workshop_access_ends_at=start + timedelta(minutes=minutes + extension),
                           **fields)
    return course


@pytest.fixture(autouse=True)
def no_guesses_counted():
    """The guess counter lives in the (shared) Redis cache; start each test at zero."""
    for client in ("127.0.0.1", "10.9.9.9"):
        cache.delete(workshops._guess_key(client))
    yield


@pytest.fixture
def workshop(db):
    return make_workshop()


@pytest.fixture
def instructor(workshop):
    return MembershipFactory(course=workshop, role=Role.INSTRUCTOR, user__username="host")


def join(client, code, email="ada@example.org", name="Ada Lovelace", **extra):
    return client.post("/join/", {"code": code, "email": email, "name": name}, **extra)


def code_of(course):
    return workshops.access_code_display(course.access_code)


# --- setting one up --------------------------------------------------------------


@pytest.fixture
def creator(db):
    user = UserFactory(username="jennifer")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="courses",
                                                     codename="add_course"))
    return user


def wizard(**changes):
    data = {"code": "GPU-WS-DEC", "title": "GPU workshop", "kind": "workshop",
            "time_zone": "America/New_York", "start_date": "2026-12-05",
            "end_date": "2026-12-05", "budget_total": "100", "default_member_budget": "5",
            "max_concurrent_workspaces": "1", "retention_days": "30",
            "workshop_start": "2026-12-05T09:00", "workshop_duration_minutes": "180",
            "workshop_extension_minutes": "60", "workshop_max_participants": ""}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_a_workshop_made_with_the_wizard_gets_a_code_and_its_window_in_local_time(
        client, creator):
    client.force_login(creator)

    response = client.post("/courses/new/", wizard())

    assert response.status_code == 302
    course = Course.objects.get(code="GPU-WS-DEC")
    assert len(course.access_code) == workshops.CODE_LENGTH
    assert set(course.access_code) <= set(workshops.ALPHABET)
    assert course.workshop_starts_at == START  # 09:00 in New York
    assert course.workshop_ends_at == START + timedelta(hours=3)
    assert course.workshop_access_ends_at == START + timedelta(hours=4)
    settings_page = client.get(f"/courses/{course.pk}/settings/").content.decode()
    assert 'value="2026-12-05T09:00"' in settings_page  # shown in local time again
    assert f'href="/courses/{course.pk}/workshop/"' in settings_page


def test_a_workshop_needs_a_start_and_a_duration_but_a_class_does_not(client, creator):
    client.force_login(creator)

    response = client.post("/courses/new/", wizard(workshop_start="",
                                                   workshop_duration_minutes="5"))

    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-field="workshop_start">When does the workshop start' in html
    assert 'data-field="workshop_duration_minutes">Between 15 minutes and 7 days' in html
    assert not Course.objects.filter(code="GPU-WS-DEC").exists()

    response = client.post("/courses/new/", wizard(kind="class", workshop_start="",
                                                   workshop_duration_minutes=""))
    assert response.status_code == 302
    assert Course.objects.get(code="GPU-WS-DEC").access_code == ""


def test_the_api_takes_the_workshop_fields_with_field_messages(client, creator):
    client.force_login(creator)
    body = {"code": "GPU-API", "title": "GPU workshop", "kind": "workshop",
            "time_zone": "Europe/Berlin", "start_date": "2026-12-05", "end_date": "2026-12-05"}

    refused = client.post("/api/courses/", {**body, "workshop_start": "2026-12-05T09:00+01:00",
                                            "workshop_duration_minutes": 180},
                          content_type="application/json")
    missing = client.post("/api/courses/", body, content_type="application/json")
    made = client.post("/api/courses/", {**body, "workshop_start": "2026-12-05T09:00",
                                         "workshop_duration_minutes": 120},
                       content_type="application/json")

    assert refused.status_code == 400
    assert "without an offset" in refused.json()["workshop_start"][0]
    assert missing.status_code == 400
    assert set(missing.json()) == {"workshop_start", "workshop_duration_minutes"}
    assert made.status_code == 201, made.json()
    assert made.json()["workshop_start"] == "2026-12-05T09:00:00"
    assert made.json()["workshop_access_ends_at"].startswith("2026-12-05T10:00:00")  # 11:00 CET
    assert "access_code" not in made.json()


# --- joining ----------------------------------------------------------------------


@time_machine.travel(DURING, tick=False)
def test_joining_with_the_code_and_an_email_makes_an_active_participant_and_signs_in(
        client, workshop):
    response = join(client, code_of(workshop).lower().replace("-", " "))

    assert response.status_code == 302
    member = Membership.objects.get(course=workshop, email="ada@example.org")
    assert (member.role, member.status, member.name) == (Role.STUDENT, Status.ACTIVE,
                                                         "Ada Lovelace")
    assert not member.user.has_usable_password()
    assert "GPU workshop" in client.get("/").content.decode()  # signed in, sees the course


@time_machine.travel(DURING, tick=False)
def test_joining_again_reuses_the_account_and_the_membership(client, workshop):
    join(client, code_of(workshop))
    client.logout()

    response = join(client, code_of(workshop), email="ADA@example.org")

    assert response.status_code == 302
    assert Membership.objects.filter(course=workshop).count() == 1
    assert client.get("/").wsgi_request.user.email == "ada@example.org"


@time_machine.travel(DURING, tick=False)
def test_the_join_link_fills_in_the_code(client, workshop):
    html = client.get(f"/w/{code_of(workshop)}/").content.decode()

    assert f'value="{code_of(workshop)}"' in html


@time_machine.travel(DURING, tick=False)
def test_a_wrong_code_is_refused_and_nobody_joins(client, workshop):
    response = join(client, "ABCD-EFGH-JKMN")

    assert response.status_code == 400
    assert "That code does not open any workshop" in response.content.decode()
    assert not Membership.objects.filter(course=workshop).exists()
    assert not client.get("/").wsgi_request.user.is_authenticated


@time_machine.travel(DURING, tick=False)
def test_after_ten_wrong_codes_even_the_right_one_waits(client, workshop):
    for _ in range(workshops.GUESS_LIMIT):
        join(client, workshops.access_code_new(), REMOTE_ADDR="10.9.9.9")

    blocked = join(client, code_of(workshop), REMOTE_ADDR="10.9.9.9")
    elsewhere = join(client, code_of(workshop), REMOTE_ADDR="127.0.0.1")

    assert blocked.status_code == 400
    assert "Too many wrong codes" in blocked.content.decode()
    assert elsewhere.status_code == 302


@pytest.mark.parametrize("when, message", [
    (START - timedelta(minutes=10), "has not started yet: joining opens Saturday Dec 5 at 09:00"),
    (START + timedelta(hours=3), "ended Saturday Dec 5 at 12:00"),
    (START + timedelta(hours=5), "ended Saturday Dec 5 at 12:00"),
])
def test_joining_before_the_start_or_after_the_end_is_refused(client, workshop, when, message):
    with time_machine.travel(when, tick=False):
        response = join(client, code_of(workshop))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Membership.objects.filter(course=workshop).exists()


@time_machine.travel(DURING, tick=False)
def test_a_full_workshop_says_so(client, db):
    course = make_workshop(workshop_max_participants=1)
    join(client, code_of(course), email="first@example.org")
    client.logout()

    response = join(client, code_of(course), email="second@example.org")

    assert response.status_code == 400
    assert "is full (1 participants)" in response.content.decode()
    assert Membership.objects.filter(course=course).count() == 1


@time_machine.travel(DURING, tick=False)
def test_an_email_with_a_password_account_must_sign_in_instead_of_being_taken_over(
        client, workshop):
    owner = UserFactory(username="ada", email="ada@example.org")

    response = join(client, code_of(workshop))

    assert response.status_code == 400
    html = response.content.decode()
    assert "There is already an account with ada@example.org" in html
    assert 'data-testid="sign-in-first"' in html
    assert not client.get("/").wsgi_request.user.is_authenticated
    assert not Membership.objects.filter(course=workshop).exists()

    client.force_login(owner)  # signed in, the code alone is enough
    response = client.post("/join/", {"code": code_of(workshop)})
    assert response.status_code == 302
    assert Membership.objects.get(course=workshop).user == owner


# --- the end of the workshop ----------------------------------------------------------


def test_the_end_task_revokes_participants_and_stops_their_workspaces_once(
        client, prices, django_capture_on_commit_callbacks):
    now = timezone.now()
    course = make_workshop(start=now - timedelta(minutes=30), minutes=60, extension=30)
    host = MembershipFactory(course=course, role=Role.INSTRUCTOR, user__username="host")
    ApprovedTemplateFactory(course=course, template=TemplateFactory())
    join(client, code_of(course))
    ada = Membership.objects.get(course=course, email="ada@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        workspace = workspace_launch(membership=ada, template_slug="ml-cpu-student",
                                     name="lab", actor=ada.user)
    workspace.refresh_from_db()
    assert workspace.state == State.RUNNING

    with time_machine.travel(now + timedelta(minutes=50)):  # ended, still in the extension
        assert workshops_end_task.delay().get() == 0
    ada.refresh_from_db()
    assert ada.status == Status.ACTIVE

    with time_machine.travel(now + timedelta(minutes=61)):  # the extension is over
        with django_capture_on_commit_callbacks(execute=True):
            assert workshops_end_task.delay().get() == 1
        ada.refresh_from_db()
        workspace.refresh_from_db()
        revoked_at, events = ada.revoked_at, workspace.events.count()
        assert ada.status == Status.REVOKED
        assert workspace.state in {State.STOPPING, State.STOPPED}
        assert workspace.stop_reason == Workspace.StopReason.REVOKED
        host.refresh_from_db()
        assert host.status == Status.ACTIVE  # staff keep the course

        with django_capture_on_commit_callbacks(execute=True):
            assert workshops_end_task.delay().get() == 0  # twice: nothing more
        ada.refresh_from_db()
        assert (ada.status, ada.revoked_at, workspace.events.count()) == (
            Status.REVOKED, revoked_at, events)
        client.logout()
        client.force_login(ada.user)
        assert "GPU workshop" not in client.get("/").content.decode()


def test_a_revoked_participant_cannot_join_again(client, db):
    now = timezone.now()
    course = make_workshop(start=now - timedelta(minutes=30), minutes=60, extension=0)
    join(client, code_of(course))
    workshops.workshops_end_due(now=now + timedelta(minutes=31))
    client.logout()

    # The instructor moves the end later; Ada is still out until re-admitted.
    Course.objects.filter(pk=course.pk).update(workshop_duration_minutes=600,
                                               workshop_access_ends_at=now + timedelta(hours=10))
    response = join(client, code_of(course))

    assert response.status_code == 400
    assert "Your access to this workshop was removed" in response.content.decode()


# --- who sees the code -----------------------------------------------------------------


@pytest.fixture
def people(workshop, instructor):
    make = {"instructor": instructor}
    for role in (Role.HEAD_TA, Role.TA, Role.STUDENT):
        make[role] = MembershipFactory(course=workshop, role=role, user__username=role)
    make["elsewhere"] = MembershipFactory(role=Role.INSTRUCTOR, user__username="elsewhere")
    make["outsider"] = UserFactory(username="outsider")
    return make


@pytest.mark.parametrize("who, status", [
    ("instructor", 200), ("head_ta", 403), ("ta", 403), ("student", 403),
    ("elsewhere", 404), ("outsider", 404),
])
def test_only_the_instructor_sees_and_regenerates_the_code(client, workshop, people, who,
                                                           status):
    person = people[who]
    client.force_login(person.user if isinstance(person, Membership) else person)
    old = workshop.access_code

    page = client.get(f"/courses/{workshop.pk}/workshop/")
    api = client.get(f"/api/courses/{workshop.pk}/access-code/")
    regenerate = client.post(f"/courses/{workshop.pk}/workshop/code/")
    api_regenerate = client.post(f"/api/courses/{workshop.pk}/access-code/")

    assert (page.status_code, api.status_code, api_regenerate.status_code) == (status,) * 3
    assert regenerate.status_code == (302 if status == 200 else status)
    workshop.refresh_from_db()
    assert (workshop.access_code != old) == (who == "instructor")
    if status == 200:
        assert workshops.access_code_display(old) in page.content.decode()
        assert f"/w/{workshops.access_code_display(old)}/" in page.content.decode()
        assert api.json()["access_code"] == workshops.access_code_display(old)
    else:
        assert old not in page.content.decode()
        assert workshops.access_code_display(old) not in page.content.decode()


@time_machine.travel(DURING, tick=False)
def test_a_regenerated_code_replaces_the_old_one(client, workshop, instructor):
    old = code_of(workshop)
    client.force_login(instructor.user)
    client.post(f"/courses/{workshop.pk}/workshop/code/")
    workshop.refresh_from_db()
    client.logout()

    assert join(client, old).status_code == 400
    assert join(client, code_of(workshop)).status_code == 302


def test_staff_see_the_settings_but_not_the_code(client, workshop, people):
    client.force_login(people[Role.TA].user)

    settings_page = client.get(f"/courses/{workshop.pk}/settings/").content.decode()
    settings_api = client.get(f"/api/courses/{workshop.pk}/").json()

    assert workshops.access_code_display(workshop.access_code) not in settings_page
    assert workshop.access_code not in str(settings_api)
