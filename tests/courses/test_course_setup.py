"""Course wizard, settings page, "duplicate for next term" and the course API."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command

from billing import ledger
from billing.models import LedgerEntry
from courses.models import Course, Membership
from courses.setup import term_bounds
from provisioning.models import ApprovedTemplate
from tests.factories import (
    ApprovedTemplateFactory,
    CourseFactory,
    MembershipFactory,
    TemplateFactory,
    UserFactory,
)

Role = Membership.Role


@pytest.fixture
def templates(db):
    cpu = TemplateFactory()
    final = TemplateFactory(slug="ml-final-project", name="ML final project",
                            instance_type="t3.large")
    gpu = TemplateFactory(slug="gpu-ml-workstation", name="GPU", instance_type="g4dn.xlarge")
    return cpu, final, gpu


@pytest.fixture
def creator(db):
    user = UserFactory(username="jennifer", first_name="Jennifer", last_name="Martinez")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="courses",
                                                     codename="add_course"))
    return user


def wizard(templates, **changes):
    """What a professor types for CS 229: two templates approved, the GPU one not."""
    cpu, final, _ = templates
    data = {
        "code": "CS229-F24", "title": "Machine Learning", "term_label": "Fall 2024",
        "kind": "class", "time_zone": "America/Los_Angeles", "start_date": "2024-08-26",
        "end_date": "2024-12-13", "budget_total": "1200", "default_member_budget": "24",
        "expected_students": "50", "max_concurrent_workspaces": "2", "max_daily_cost": "5",
        "idle_stop_minutes": "60", "term_end_stop": "on", "term_end_archive": "on",
        "term_end_revoke": "on", "term_end_report": "on", "retention_days": "365",
        f"tpl-{cpu.pk}-approved": "on",
        f"tpl-{final.pk}-approved": "on", f"tpl-{final.pk}-requires_approval": "on",
        f"tpl-{final.pk}-note": "final project only", f"tpl-{final.pk}-capacity": "10",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


# --- the wizard -------------------------------------------------------------


def test_a_professor_creates_a_course_and_becomes_its_instructor(client, creator, templates):
    client.force_login(creator)

    response = client.post("/courses/new/", wizard(templates))

    course = Course.objects.get(code="CS229-F24")
    assert response.status_code == 302 and response["Location"] == \
        f"/courses/{course.pk}/settings/"
    assert (course.title, course.term_label, course.kind, course.status) == \
        ("Machine Learning", "Fall 2024", "class", "active")
    assert (course.budget_total, course.default_member_budget, course.expected_students) == \
        (Decimal("1200.00"), Decimal("24.00"), 50)
    assert (course.max_concurrent_workspaces, course.max_daily_cost,
            course.idle_stop_minutes) == (2, Decimal("5.00"), 60)
    assert course.term_end_stop and course.term_end_revoke and course.retention_days == 365
    assert course.starts_at == datetime(2024, 8, 26, 7, 0, tzinfo=UTC)
    assert course.ends_at == datetime(2024, 12, 14, 7, 59, 59, tzinfo=UTC)  # PST, -8
    member = Membership.objects.get(course=course)
    assert (member.user, member.role, member.status, member.name) == \
        (creator, Role.INSTRUCTOR, Membership.Status.ACTIVE, "Jennifer Martinez")
    lines = {a.template.slug: (a.requires_approval, a.note, a.capacity)
             for a in ApprovedTemplate.objects.filter(course=course)}
    assert lines == {"ml-cpu-student": (False, "", None),
                     "ml-final-project": (True, "final project only", 10)}
    page = client.get(response["Location"]).content.decode()
    assert "CS229-F24 is ready" in page


def test_a_user_without_the_permission_cannot_open_the_wizard(client, templates):
    user = UserFactory(username="student")
    client.force_login(user)

    assert client.get("/courses/new/").status_code == 403
    assert client.post("/courses/new/", wizard(templates)).status_code == 403
    assert not Course.objects.exists()
    assert "/courses/new/" not in client.get("/").content.decode()


def test_the_dashboard_links_the_wizard_for_people_who_may_create_courses(client, creator):
    client.force_login(creator)

    assert 'href="/courses/new/"' in client.get("/").content.decode()


def test_a_superuser_may_create_a_course_without_the_explicit_permission(client, templates):
    admin = UserFactory(username="root", is_superuser=True)
    client.force_login(admin)

    assert client.post("/courses/new/", wizard(templates)).status_code == 302
    assert Membership.objects.get(user=admin).role == Role.INSTRUCTOR


@pytest.mark.parametrize("changes, field, message", [
    ({"end_date": "2024-08-25"}, "end_date", "The term cannot end before it starts"),
    ({"budget_total": "-5"}, "budget_total", "Money cannot be negative."),
    ({"default_member_budget": "-1"}, "default_member_budget", "Money cannot be negative."),
    ({"default_member_budget": "1500"}, "default_member_budget",
     "The default per-student budget ($1,500.00) is more than the whole course budget "
     "($1,200.00)."),
    ({"time_zone": "Mars/Olympus_Mons"}, "time_zone", "Unknown time zone “Mars/Olympus_Mons”"),
    ({"code": "cs101"}, "code", "There is already a course with the code cs101"),
    ({"code": ""}, "code", "Give the course a short code"),
    ({"start_date": "26/08/2024"}, "start_date", "Enter a valid date."),
    ({"max_daily_cost": "0"}, "max_daily_cost",
     "Leave it empty for no daily cap; $0 would refuse every launch."),
    ({"idle_stop_minutes": "2"}, "idle_stop_minutes", "Between 5 and 1,440 minutes"),
    ({"retention_days": "-1"}, "retention_days", "Between 0 and 3,650 days"),
    ({"budget_total": "lots"}, "budget_total", "Enter a number."),
])
def test_each_bad_input_gets_its_field_message_keeps_what_was_typed_and_creates_nothing(
        client, creator, templates, changes, field, message):
    CourseFactory(code="CS101")
    client.force_login(creator)

    response = client.post("/courses/new/", wizard(templates, **changes))

    assert response.status_code == 400
    html = response.content.decode()
    assert f'data-field="{field}">{message}' in html.replace("&#x27;", "'").replace(
        "&quot;", '"')
    assert 'value="Machine Learning"' in html  # typed input kept
    assert 'value="final project only"' in html
    assert not Course.objects.filter(title="Machine Learning").exists()


def test_a_zero_capacity_on_an_approved_template_is_refused_on_its_row(client, creator,
                                                                       templates):
    _, final, _ = templates
    client.force_login(creator)

    response = client.post("/courses/new/", wizard(templates, **{
        f"tpl-{final.pk}-capacity": "0"}))

    assert response.status_code == 400
    assert "At least 1 slot; leave it empty for no limit." in response.content.decode()
    assert not Course.objects.exists()


def test_the_summary_shows_students_times_default_and_warns_when_it_exceeds_the_total(
        client, creator):
    client.force_login(creator)

    response = client.post("/courses/new/summary/", {
        "budget_total": "1200", "default_member_budget": "30", "expected_students": "50",
        "time_zone": "America/New_York", "start_date": "2024-08-26", "end_date": "2024-12-13"})

    html = response.content.decode()
    assert "50 × $30.00 = <strong>$1,500.00</strong>" in html
    assert "is more than the course budget of $1,200.00" in html
    assert "to Fri Dec 13, 2024 23:59:59 EST" in html
    ok = client.post("/courses/new/summary/", {"budget_total": "1200",
                                               "default_member_budget": "24",
                                               "expected_students": "50"})
    assert "$1,200.00</strong>" in ok.content.decode()
    assert "summary-warning" not in ok.content.decode()


# --- the term in the course's time zone -----------------------------------------


def test_the_term_ends_at_23_59_59_local_on_the_last_day_on_either_side_of_dst():
    # New York leaves daylight saving at 02:00 on Sunday Nov 1, 2026.
    _, before = term_bounds(start=date(2026, 9, 1), end=date(2026, 10, 31),
                            time_zone="America/New_York")
    _, after = term_bounds(start=date(2026, 9, 1), end=date(2026, 11, 1),
                           time_zone="America/New_York")
    spring, _ = term_bounds(start=date(2026, 3, 8), end=date(2026, 5, 1),
                            time_zone="America/New_York")

    assert before == datetime(2026, 11, 1, 3, 59, 59, tzinfo=UTC)  # EDT, UTC-4
    assert after == datetime(2026, 11, 2, 4, 59, 59, tzinfo=UTC)  # EST, UTC-5
    assert spring == datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # midnight EST, before the jump


def test_the_wizard_stores_the_last_second_of_the_last_local_day_in_utc(client, creator,
                                                                        templates):
    client.force_login(creator)

    client.post("/courses/new/", wizard(templates, time_zone="Europe/Berlin",
                                        start_date="2026-03-02", end_date="2026-10-25"))

    course = Course.objects.get(code="CS229-F24")
    # Berlin's summer time ends at 03:00 on Oct 25, 2026: that evening is CET, UTC+1.
    assert course.ends_at == datetime(2026, 10, 25, 22, 59, 59, tzinfo=UTC)
    html = client.get(f"/courses/{course.pk}/settings/").content.decode()
    assert 'value="2026-10-25"' in html  # shown as the local date that was typed


def test_changing_only_the_time_zone_keeps_the_local_dates(client, creator, templates):
    client.force_login(creator)
    client.post("/courses/new/", wizard(templates))
    course = Course.objects.get(code="CS229-F24")

    response = client.post(f"/courses/{course.pk}/settings/",
                           wizard(templates, time_zone="America/New_York"))

    assert response.status_code == 302
    course.refresh_from_db()
    assert course.ends_at == datetime(2024, 12, 14, 4, 59, 59, tzinfo=UTC)


# --- the settings page -------------------------------------------------------


@pytest.fixture
def cs229(templates):
    course = CourseFactory(code="CS229", title="Machine Learning", budget_total=Decimal(1200),
                           default_member_budget=Decimal(24), starts_at=datetime(
                               2024, 8, 26, 7, tzinfo=UTC),
                           ends_at=datetime(2024, 12, 14, 7, 59, 59, tzinfo=UTC),
                           time_zone="America/Los_Angeles")
    ApprovedTemplateFactory(course=course, template=templates[0])
    ApprovedTemplateFactory(course=course, template=templates[1], requires_approval=True,
                            note="final project only", capacity=10)
    return course


@pytest.fixture
def people(cs229):
    """Everyone the matrix asks: each role here, a member elsewhere, an outsider."""
    make = {role: MembershipFactory(course=cs229, role=role, user__username=role)
            for role in Role.values}
    make["elsewhere"] = MembershipFactory(role=Role.INSTRUCTOR, user__username="elsewhere")
    make["outsider"] = UserFactory(username="outsider")
    return make


def _user(people, who):
    person = people[who]
    return person.user if isinstance(person, Membership) else person


@pytest.mark.parametrize("who, view, change", [
    ("instructor", 200, 302),
    ("head_ta", 200, 403),
    ("ta", 200, 403),
    ("student", 403, 403),
    ("elsewhere", 404, 404),
    ("outsider", 404, 404),
])
def test_who_may_see_and_change_a_course_s_settings(client, cs229, people, templates, who,
                                                    view, change):
    client.force_login(_user(people, who))
    url = f"/courses/{cs229.pk}/settings/"

    got = client.get(url)
    changed = client.post(url, wizard(templates, code="CS229", title="Changed"))

    assert (got.status_code, changed.status_code) == (view, change)
    cs229.refresh_from_db()
    assert (cs229.title == "Changed") == (who == "instructor")
    if view == 200:
        html = got.content.decode()
        assert ("Save settings" in html) == (who == "instructor")
        assert ('data-testid="read-only"' in html) == (who != "instructor")


def test_an_instructor_changes_the_approved_list_on_the_settings_page(client, cs229, people,
                                                                      templates):
    cpu, final, gpu = templates
    client.force_login(people["instructor"].user)

    response = client.post(f"/courses/{cs229.pk}/settings/", wizard(templates, **{
        "code": "CS229", f"tpl-{cpu.pk}-approved": None, f"tpl-{gpu.pk}-approved": "on",
        f"tpl-{gpu.pk}-capacity": "4", f"tpl-{gpu.pk}-note": "research only"}))

    assert response.status_code == 302
    lines = {a.template.slug: (a.requires_approval, a.note, a.capacity)
             for a in ApprovedTemplate.objects.filter(course=cs229)}
    assert lines == {"gpu-ml-workstation": (False, "research only", 4),
                     "ml-final-project": (True, "final project only", 10)}


def test_the_settings_page_warns_when_the_roster_s_caps_exceed_the_course_budget(
        client, cs229, people):
    for n in range(60):  # 60 × $24 = $1,440 > $1,200
        MembershipFactory(course=cs229, user=None, email=f"s{n}@uni.example.edu",
                          status=Membership.Status.INVITED)
    client.force_login(people["instructor"].user)

    html = client.get(f"/courses/{cs229.pk}/settings/").content.decode()

    assert "The caps of the 61 students on the roster add up to $1,464.00" in html


def test_course_pages_link_to_the_settings_for_staff_only(client, cs229, people):
    client.force_login(people["ta"].user)
    assert f"/courses/{cs229.pk}/settings/" in client.get("/").content.decode()
    client.force_login(people["student"].user)
    assert f"/courses/{cs229.pk}/settings/" not in client.get("/").content.decode()


# --- duplicate for next term ---------------------------------------------------


def test_duplicating_copies_settings_templates_and_staff_but_not_students_or_money(
        client, cs229, people, creator):
    instructor = people["instructor"]
    instructor.user.user_permissions.add(*creator.user_permissions.all())
    MembershipFactory(course=cs229, user=None, email="kevin.wong@uni.example.edu",
                      role=Role.TA, status=Membership.Status.INVITED, section="B")
    MembershipFactory(course=cs229, role=Role.TA, user__username="gone",
                      status=Membership.Status.REVOKED)
    Course.objects.filter(pk=cs229.pk).update(max_daily_cost=Decimal(5), idle_stop_minutes=45,
                                              term_end_archive=False, retention_days=90,
                                              expected_students=50)
    ledger.adjustment_grant(membership=people["student"], amount=Decimal("3"), actor=None,
                            note="last term", key="old-spend")
    client.force_login(instructor.user)

    response = client.post(f"/courses/{cs229.pk}/duplicate/", {
        "code": "CS229-W25", "title": "Machine Learning", "term_label": "Winter 2025",
        "start_date": "2025-01-06", "end_date": "2025-03-21"})

    new = Course.objects.get(code="CS229-W25")
    assert response.status_code == 302
    assert response["Location"] == f"/courses/{new.pk}/settings/"
    assert new.duplicated_from == cs229 and new.term_label == "Winter 2025"
    assert (new.budget_total, new.default_member_budget, new.max_daily_cost,
            new.idle_stop_minutes, new.term_end_archive, new.retention_days,
            new.time_zone, new.expected_students) == (
        Decimal(1200), Decimal(24), Decimal(5), 45, False, 90, "America/Los_Angeles", 50)
    assert new.ends_at == datetime(2025, 3, 22, 6, 59, 59, tzinfo=UTC)  # PDT from Mar 9
    staff = {(m.email, m.role, m.status) for m in new.memberships.all()}
    assert staff == {
        (instructor.email, Role.INSTRUCTOR, "active"),
        (people["head_ta"].email, Role.HEAD_TA, "active"),
        (people["ta"].email, Role.TA, "active"),
        ("kevin.wong@uni.example.edu", Role.TA, "invited"),
    }
    lines = {a.template.slug: (a.requires_approval, a.note, a.capacity)
             for a in ApprovedTemplate.objects.filter(course=new)}
    assert lines == {"ml-cpu-student": (False, "", None),
                     "ml-final-project": (True, "final project only", 10)}
    assert not LedgerEntry.objects.filter(course=new).exists()
    assert LedgerEntry.objects.filter(course=cs229).count() == 1
    assert cs229.memberships.count() == 6  # the old course is untouched


def test_duplicating_needs_a_new_code_and_a_sane_term(client, cs229, people, creator):
    instructor = people["instructor"].user
    instructor.user_permissions.add(*creator.user_permissions.all())
    client.force_login(instructor)

    response = client.post(f"/courses/{cs229.pk}/duplicate/", {
        "code": "cs229", "title": "ML", "start_date": "2025-03-01", "end_date": "2025-01-01"})

    html = response.content.decode()
    assert response.status_code == 400
    assert "There is already a course with the code cs229" in html
    assert "The term cannot end before it starts" in html
    assert Course.objects.count() == 2  # cs229 and the other course in `people`


@pytest.mark.parametrize("who, status", [("head_ta", 403), ("ta", 403), ("student", 403),
                                         ("elsewhere", 404), ("outsider", 404)])
def test_only_the_instructor_duplicates(client, cs229, people, who, status):
    client.force_login(_user(people, who))

    assert client.get(f"/courses/{cs229.pk}/duplicate/").status_code == status


def test_an_instructor_without_the_create_permission_cannot_duplicate(client, cs229, people):
    client.force_login(people["instructor"].user)

    assert client.get(f"/courses/{cs229.pk}/duplicate/").status_code == 403


# --- the API ------------------------------------------------------------------


def api_body(**changes):
    body = {"code": "CS229-F24", "title": "Machine Learning", "term_label": "Fall 2024",
            "time_zone": "America/Los_Angeles", "start_date": "2024-08-26",
            "end_date": "2024-12-13", "budget_total": "1200", "default_member_budget": "24",
            "approved_templates": [
                {"template": "ml-cpu-student"},
                {"template": "ml-final-project", "requires_approval": True,
                 "note": "final project only", "capacity": 10}]}
    body.update(changes)
    return body


def test_the_api_creates_a_course_with_its_approved_templates(client, creator, templates):
    client.force_login(creator)

    response = client.post("/api/courses/", api_body(), content_type="application/json")

    assert response.status_code == 201, response.content
    data = response.json()
    assert data["ends_at"] == "2024-12-14T07:59:59Z" and data["end_date"] == "2024-12-13"
    assert [(t["template"], t["requires_approval"], t["capacity"])
            for t in data["approved_templates"]] == [("ml-cpu-student", False, None),
                                                     ("ml-final-project", True, 10)]
    assert Membership.objects.get(course_id=data["id"]).user == creator
    mine = client.get("/api/courses/").json()
    assert [(c["code"], c["role"]) for c in mine] == [("CS229-F24", "instructor")]


def test_the_api_answers_bad_input_field_by_field(client, creator, templates):
    CourseFactory(code="cs229-f24")
    client.force_login(creator)

    response = client.post("/api/courses/", api_body(
        time_zone="Nowhere/City", end_date="2024-01-01", default_member_budget="-3",
        approved_templates=[{"template": "no-such-thing"}]), content_type="application/json")

    assert response.status_code == 400
    assert "no-such-thing" in str(response.json()["approved_templates"])
    # The rules are judged, all together, once every field parses:
    response = client.post("/api/courses/", api_body(
        time_zone="Nowhere/City", end_date="2024-01-01", default_member_budget="-3"),
        content_type="application/json")
    errors = response.json()
    assert response.status_code == 400
    assert errors["code"] == ["There is already a course with the code CS229-F24 "
                              "(codes ignore upper and lower case)."]
    assert errors["time_zone"][0].startswith("Unknown time zone")
    assert errors["end_date"][0].startswith("The term cannot end before it starts")
    assert errors["default_member_budget"] == ["Money cannot be negative."]
    assert Course.objects.count() == 1


def test_the_api_refuses_to_create_without_the_permission(client, templates):
    client.force_login(UserFactory(username="someone"))

    assert client.post("/api/courses/", api_body(),
                       content_type="application/json").status_code == 403


@pytest.mark.parametrize("who, read, change", [
    ("instructor", 200, 200),
    ("head_ta", 200, 403),
    ("ta", 200, 403),
    ("student", 403, 403),
    ("elsewhere", 404, 404),
    ("outsider", 404, 404),
])
def test_who_may_read_and_change_a_course_through_the_api(client, cs229, people, who, read,
                                                          change):
    client.force_login(_user(people, who))
    url = f"/api/courses/{cs229.pk}/"

    got = client.get(url)
    patched = client.patch(url, {"title": "Changed", "approved_templates": [
        {"template": "gpu-ml-workstation", "capacity": 2}]}, content_type="application/json")

    assert (got.status_code, patched.status_code) == (read, change)
    slugs = set(ApprovedTemplate.objects.filter(course=cs229)
                .values_list("template__slug", flat=True))
    if who == "instructor":
        assert patched.json()["title"] == "Changed"
        assert slugs == {"gpu-ml-workstation"}
    else:
        assert slugs == {"ml-cpu-student", "ml-final-project"}
    if read == 200:
        assert got.json()["end_date"] == "2024-12-13"


def test_a_partial_update_without_templates_keeps_the_approved_list(client, cs229, people):
    client.force_login(people["instructor"].user)

    response = client.patch(f"/api/courses/{cs229.pk}/", {"default_member_budget": "2000"},
                            content_type="application/json")

    assert response.status_code == 400
    assert "more than the whole course budget" in response.json()["default_member_budget"][0]
    ok = client.patch(f"/api/courses/{cs229.pk}/", {"idle_stop_minutes": 30},
                      content_type="application/json")
    assert ok.status_code == 200 and ok.json()["idle_stop_minutes"] == 30
    assert ApprovedTemplate.objects.filter(course=cs229).count() == 2


def test_the_api_duplicates_a_course_for_its_instructor(client, cs229, people, creator):
    instructor = people["instructor"].user
    instructor.user_permissions.add(*creator.user_permissions.all())
    client.force_login(instructor)

    response = client.post(f"/api/courses/{cs229.pk}/duplicate/", {
        "code": "CS229-W25", "term_label": "Winter 2025", "start_date": "2025-01-06",
        "end_date": "2025-03-21"}, content_type="application/json")

    assert response.status_code == 201
    data = response.json()
    assert (data["code"], data["title"], len(data["approved_templates"])) == \
        ("CS229-W25", "Machine Learning", 2)
    client.force_login(people["head_ta"].user)
    assert client.post(f"/api/courses/{cs229.pk}/duplicate/", {},
                       content_type="application/json").status_code == 403


def test_the_openapi_schema_describes_the_course_api(client, db):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]

    assert {"/api/courses/", "/api/courses/{id}/", "/api/courses/{id}/duplicate/"} <= set(paths)
    assert {"get", "put", "patch"} <= set(paths["/api/courses/{id}/"])


def test_the_demo_instructor_may_create_courses(db):
    call_command("demo_seed")

    from django.contrib.auth import get_user_model
    jennifer = get_user_model().objects.get(username="jennifer.martinez")
    assert jennifer.has_perm("courses.add_course")
    assert not get_user_model().objects.get(username="emily.chen").has_perm(
        "courses.add_course")
