"""A student asks for the GPU template; the professor sees the pending count on
the course page and approves it with an expiry, in place (htmx)."""

import pytest
from playwright.sync_api import expect

from courses.models import Approval, Membership
from tests.factories import PASSWORD, ApprovedTemplateFactory, MembershipFactory, TemplateFactory

pytestmark = pytest.mark.e2e


def sign_in(page, url, user):
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_a_student_asks_and_the_professor_approves_until_a_date(
        live_lens, browser, course, prices, student, screenshot_dir):
    ApprovedTemplateFactory(course=course, requires_approval=True, note="final project only",
                            template=TemplateFactory(slug="gpu-ml-workstation", name="GPU",
                                                     instance_type="g4dn.xlarge"))
    prof = MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                             user__username="prof", name="Dr. Jennifer Martinez")

    mine = browser.new_page()
    sign_in(mine, live_lens, student.user)
    mine.get_by_role("link", name="Request access").first.click()
    mine.get_by_label("Template", exact=True).select_option("gpu-ml-workstation")
    mine.get_by_label("Reason").fill("Final project: fine-tuning a ResNet")
    mine.get_by_role("button", name="Send request").click()
    expect(mine.locator(".flash.success")).to_contain_text("Asked for gpu-ml-workstation")
    mine.screenshot(path=str(screenshot_dir / "approval-request.png"), full_page=True)

    theirs = browser.new_page()
    sign_in(theirs, live_lens, prof.user)
    theirs.goto(f"{live_lens}/courses/{course.pk}/")
    expect(theirs.get_by_test_id("pending-approvals")).to_have_text("1")
    theirs.get_by_test_id("pending-approvals").get_by_role("link").click()
    row = theirs.get_by_test_id("pending-row")
    expect(row).to_contain_text("Final project: fine-tuning a ResNet")
    row.locator("input[type=datetime-local]").fill("2030-01-15T09:00")
    row.locator("input[name$=note]").fill("Good luck")
    row.get_by_role("button", name="Approve").click()

    expect(theirs.get_by_test_id("decided")).to_contain_text("Approved")
    expect(theirs.get_by_test_id("decided")).to_contain_text("Jan 15, 2030, 09:00")
    expect(theirs.get_by_test_id("pending-count")).to_have_text("0")
    theirs.screenshot(path=str(screenshot_dir / "approvals.png"), full_page=True)
    assert Approval.objects.get().status == Approval.Status.APPROVED
