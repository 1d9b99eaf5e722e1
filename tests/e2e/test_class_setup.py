"""The whole class set-up in a browser: a professor creates the course with the
wizard, approves some templates, imports her class list, and a student who
signs in with an invited email sees only what she approved."""

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from courses.models import Course, Membership
from tests.factories import PASSWORD, TemplateFactory, UserFactory

pytestmark = pytest.mark.e2e


def _sign_in(page, url, email):
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def _sign_out(page, url):
    page.context.clear_cookies()
    page.goto(f"{url}/accounts/login/")


def test_a_student_sees_only_the_templates_the_professor_approved(
        live_lens, prices, page, screenshot_dir, tmp_path):
    prof = UserFactory(username="jennifer")
    prof.user_permissions.add(Permission.objects.get(codename="add_course",
                                                     content_type__app_label="courses"))
    cpu = TemplateFactory(slug="ml-cpu", name="ML CPU workstation", instance_type="t3.medium")
    final = TemplateFactory(slug="ml-final-project", name="ML final project",
                            instance_type="t3.large")
    TemplateFactory(slug="big-gpu", name="Big GPU box", instance_type="g5.xlarge")
    emily = UserFactory(username="emily", email="emily.chen@uni.example.edu")

    _sign_in(page, live_lens, prof.email)
    page.get_by_role("link", name="New course").click()
    page.fill("input[name=code]", "CS229-F26")
    page.fill("input[name=title]", "Machine Learning")
    page.fill("input[name=time_zone]", "America/Los_Angeles")
    page.fill("input[name=start_date]", "2026-09-21")
    page.fill("input[name=end_date]", "2026-12-11")
    page.fill("input[name=budget_total]", "1500")
    page.fill("input[name=default_member_budget]", "25")
    page.fill("input[name=expected_students]", "50")
    page.check(f"input[name=tpl-{cpu.pk}-approved]")
    page.check(f"input[name=tpl-{final.pk}-approved]")
    page.check(f"input[name=tpl-{final.pk}-requires_approval]")
    page.fill(f"input[name=tpl-{final.pk}-note]", "final project only")
    page.get_by_role("button", name="Create course").click()
    expect(page.get_by_role("heading", name="CS229-F26 — settings")).to_be_visible()
    course = Course.objects.get(code="CS229-F26")

    roster = tmp_path / "cs229.csv"
    roster.write_text("email,name,section\n" + "\n".join(
        ["emily.chen@uni.example.edu,Emily Chen,",
         *[f"s{i}@uni.example.edu,Student {i}," for i in range(1, 50)]]) + "\n")
    page.goto(f"{live_lens}/")
    page.get_by_role("link", name="Roster", exact=True).click()
    page.get_by_test_id("import-roster").locator("input[type=file]").set_input_files(str(roster))
    page.get_by_role("button", name="Preview import").click()
    expect(page.get_by_test_id("count-new")).to_have_text("50")
    page.get_by_test_id("commit").click()
    expect(page.locator(".flash.success")).to_contain_text("50 invited")
    assert course.memberships.filter(role=Membership.Role.STUDENT).count() == 50

    _sign_out(page, live_lens)
    _sign_in(page, live_lens, emily.email)
    launch = page.get_by_test_id(f"launch-{course.memberships.get(email=emily.email).pk}")
    expect(launch).to_contain_text("ML CPU workstation")
    expect(launch).to_contain_text("ML final project")
    expect(launch).to_contain_text("needs approval")
    expect(launch.locator("tr", has_text="ML CPU workstation")).to_contain_text("$0.0416")
    expect(launch).not_to_contain_text("Big GPU box")
    page.screenshot(path=str(screenshot_dir / "class-setup-student.png"), full_page=True)
    assert Membership.objects.get(course=course, user=emily).status == Membership.Status.ACTIVE
