"""A professor watches the course page while a student's workspace changes state:
the student's row updates without a reload."""

import threading

import pytest
from django.db import connection
from playwright.sync_api import expect

from courses.models import Membership
from provisioning.models import Workspace
from provisioning.services import cloud_account_default, workspace_transition
from provisioning.states import State
from tests.factories import PASSWORD, MembershipFactory

pytestmark = pytest.mark.e2e


def test_the_course_page_shows_a_student_s_workspace_change_live(
        live_lens, page, course, student, approved, screenshot_dir):
    prof = MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                             user__username="prof")
    ws = Workspace.objects.create(owner=student, template=approved.template,
                                  cloud_account=cloud_account_default(), name="hw3",
                                  instance_type=approved.template.instance_type,
                                  state=State.STOPPED)
    page.goto(f"{live_lens}/accounts/login/")
    page.fill("input[name=login]", prof.user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("link", name="Course page").click()
    row = page.locator(f"#course-row-{student.pk}")
    expect(row.get_by_test_id("states")).to_have_text("hw3: Stopped")
    expect(page.locator("section.course[ws-connect]")).to_have_attribute("data-live", "open")
    page.evaluate("window.__noReload = true")

    # In a thread of its own, as a worker would: Playwright's loop runs in this one.
    def start():
        try:
            workspace_transition(workspace=ws, to=State.PENDING, actor=student.user,
                                 reason="start")
        finally:
            connection.close()

    change = threading.Thread(target=start)
    change.start()
    change.join()

    expect(row.get_by_test_id("states")).to_have_text("hw3: Starting", timeout=10_000)
    expect(page.get_by_test_id("events")).to_contain_text("Stopped → Starting")
    assert page.evaluate("window.__noReload") is True
    page.screenshot(path=str(screenshot_dir / "course-page-live.png"), full_page=True)
