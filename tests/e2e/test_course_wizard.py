"""A professor sets up a course in the browser: the live summary warns as she
types, a mistake keeps her input, and the course opens on its settings page."""

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from courses.models import Course, Membership
from provisioning.models import ApprovedTemplate
from tests.factories import PASSWORD, TemplateFactory, UserFactory

pytestmark = pytest.mark.e2e


def test_a_professor_sets_up_a_course_with_the_wizard(live_lens, page, screenshot_dir):
    prof = UserFactory(username="jennifer")
    prof.user_permissions.add(Permission.objects.get(codename="add_course",
                                                     content_type__app_label="courses"))
    cpu = TemplateFactory()
    final = TemplateFactory(slug="ml-final-project", name="ML final project",
                            instance_type="t3.large")
    page.goto(f"{live_lens}/accounts/login/")
    page.fill("input[name=login]", prof.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("link", name="New course").click()

    page.fill("input[name=code]", "CS229-F24")
    page.fill("input[name=title]", "Machine Learning")
    page.fill("input[name=time_zone]", "America/Los_Angeles")
    page.fill("input[name=start_date]", "2024-08-26")
    page.fill("input[name=end_date]", "2024-08-01")  # a slip: before the start
    page.fill("input[name=budget_total]", "1200")
    page.fill("input[name=default_member_budget]", "30")
    page.fill("input[name=expected_students]", "50")
    expect(page.get_by_test_id("summary-warning")).to_contain_text("$1,500.00")
    page.screenshot(path=str(screenshot_dir / "course-wizard-warning.png"), full_page=True)
    expect(page.get_by_test_id("summary-term")).to_have_text("The last day is before the first.")
    page.fill("input[name=default_member_budget]", "24")
    expect(page.get_by_test_id("summary-warning")).to_have_count(0)
    page.check(f"input[name=tpl-{cpu.pk}-approved]")
    page.check(f"input[name=tpl-{final.pk}-approved]")
    page.check(f"input[name=tpl-{final.pk}-requires_approval]")
    page.fill(f"input[name=tpl-{final.pk}-note]", "final project only")
    page.get_by_role("button", name="Create course").click()

    expect(page.locator('[data-field="end_date"]')).to_contain_text("cannot end before")
    expect(page.locator("input[name=title]")).to_have_value("Machine Learning")
    expect(page.locator(f"input[name=tpl-{final.pk}-note]")).to_have_value("final project only")
    page.fill("input[name=end_date]", "2024-12-13")
    expect(page.get_by_test_id("summary-term")).to_contain_text("Fri Dec 13, 2024 23:59:59 PST")
    page.get_by_role("button", name="Create course").click()

    expect(page.get_by_role("heading", name="CS229-F24 — settings")).to_be_visible()
    page.screenshot(path=str(screenshot_dir / "course-settings.png"), full_page=True)
    course = Course.objects.get(code="CS229-F24")
    assert Membership.objects.get(course=course).role == Membership.Role.INSTRUCTOR
    assert set(ApprovedTemplate.objects.filter(course=course)
               .values_list("template__slug", "requires_approval")) == {
        ("ml-cpu-student", False), ("ml-final-project", True)}
