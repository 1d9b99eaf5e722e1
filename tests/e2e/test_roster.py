"""A professor imports a class list in the browser: preview, fix, import, see the roster."""

import pytest
from playwright.sync_api import expect

from courses.models import Membership, Section
from tests.factories import PASSWORD, MembershipFactory

pytestmark = pytest.mark.e2e


def test_a_professor_previews_fixes_and_imports_a_class_list(
        live_lens, page, course, screenshot_dir, tmp_path):
    prof = MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                             user__username="prof", name="Dr. Jennifer Martinez")
    for name in ("A", "B"):
        Section.objects.create(course=course, name=name)
    rows = [f"s{i}@uni.example.edu,Student {i},{'AB'[i % 2]}" for i in range(1, 21)]
    bad = tmp_path / "bad.csv"
    bad.write_text("email,name,section\n" + "\n".join([*rows, "oops,Nobody,C"]) + "\n")
    good = tmp_path / "good.csv"
    good.write_text("email,name,section\n" + "\n".join(rows) + "\n")

    page.goto(f"{live_lens}/accounts/login/")
    page.fill("input[name=login]", prof.user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("link", name="Roster", exact=True).click()
    expect(page.get_by_role("heading", name="Machine Learning — roster")).to_be_visible()

    page.get_by_test_id("import-roster").locator("input[type=file]").set_input_files(str(bad))
    page.get_by_role("button", name="Preview import").click()
    errors = page.get_by_test_id("errors")
    expect(errors).to_contain_text("Row 22, email: “oops” is not a valid email address.")
    expect(errors).to_contain_text("Row 22, section: Section “C” does not exist in CS229")
    page.screenshot(path=str(screenshot_dir / "roster-import-errors.png"), full_page=True)
    assert not Membership.objects.filter(role=Membership.Role.STUDENT).exists()

    page.locator("input[type=file]").set_input_files(str(good))
    page.get_by_role("button", name="Preview import").click()
    expect(page.get_by_test_id("count-new")).to_have_text("20")
    page.get_by_test_id("commit").click()

    expect(page.locator(".flash.success")).to_contain_text("20 invited")
    page.select_option("#f-section", "B")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("[data-testid=roster] tbody tr")).to_have_count(10)
    page.screenshot(path=str(screenshot_dir / "roster.png"), full_page=True)
