"""A student resets a running workspace from its card and watches it come back live."""

import pytest
from playwright.sync_api import expect

from provisioning.models import Workspace, WorkspaceBackup
from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e


def test_a_student_resets_a_workspace_and_keeps_the_home_volume(
        live_lens, page, student, approved, screenshot_dir):
    page.goto(f"{live_lens}/accounts/login/")
    page.fill("input[name=login]", student.user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("section.course")).to_have_attribute("data-live", "open")
    page.evaluate("window.__noReload = true")
    page.fill("input[name=name]", "project")
    page.get_by_role("button", name="Launch").click()
    card = page.locator("article.ws", has_text="project")
    expect(card.get_by_test_id("state")).to_have_text("Running", timeout=30_000)
    before = Workspace.objects.get(name="project")

    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    card.get_by_test_id("reset").click()

    expect(page.get_by_role("status").filter(has_text="Resetting project")).to_be_visible()
    expect(card.get_by_test_id("state")).to_have_text("Running", timeout=30_000)
    expect(card.get_by_test_id("reset-progress")).to_have_count(0, timeout=30_000)
    after = Workspace.objects.get(pk=before.pk)
    assert "Your files in /home stay" in dialogs[0]
    assert after.instance_id != before.instance_id
    assert after.home_volume_id == before.home_volume_id
    assert WorkspaceBackup.objects.filter(workspace=after).exists()
    assert page.evaluate("window.__noReload") is True
    page.screenshot(path=str(screenshot_dir / "reset-done.png"), full_page=True)
