"""A student signs in, clicks Launch, and sees "Running" without reloading the page."""

import re

import pytest
from playwright.sync_api import expect

from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e


def test_a_student_launches_and_watches_the_workspace_come_up_live(
        live_lens, page, student, approved, screenshot_dir):
    page.goto(f"{live_lens}/accounts/login/")
    page.fill("input[name=login]", student.user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="My courses")).to_be_visible()
    # The live connection is up before we act, as it would be for a person.
    expect(page.locator("section.course")).to_have_attribute("data-live", "open")
    page.evaluate("window.__noReload = true")

    page.fill("input[name=name]", "homework-1")
    page.get_by_role("button", name="Launch").click()

    card = page.locator("article.ws", has_text="homework-1")
    expect(card.get_by_test_id("state")).to_have_text("Running", timeout=30_000)
    expect(card.get_by_test_id("address")).to_have_text(re.compile(r"\d+\.\d+\.\d+\.\d+"))
    assert page.evaluate("window.__noReload") is True
    page.screenshot(path=str(screenshot_dir / "launch-running.png"), full_page=True)

    card.get_by_role("button", name="Stop").click()
    expect(card.get_by_test_id("state")).to_have_text("Stopped", timeout=30_000)
    expect(card.get_by_role("button", name="Start")).to_be_visible()
    assert page.evaluate("window.__noReload") is True
