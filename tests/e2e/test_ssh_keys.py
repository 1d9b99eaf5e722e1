"""A student makes an SSH key in the browser: the private key downloads once, the page shows it."""

import pytest
from playwright.sync_api import expect

from provisioning.models import KeyPair
from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e


def test_a_student_fixes_a_bad_upload_then_generates_a_key_and_downloads_it(
        live_lens, page, student, screenshot_dir):
    page.goto(f"{live_lens}/accounts/login/")
    page.fill("input[name=login]", student.user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("link", name="SSH keys").click()
    expect(page.get_by_test_id("no-key")).to_be_visible()

    page.fill("textarea[name=public_key]", "ssh-rsa not-a-key")
    page.get_by_test_id("upload").click()
    expect(page.locator('[data-field="public_key"]')).to_contain_text("copy the whole line")

    with page.expect_download() as download:
        page.get_by_test_id("generate").click()
    assert download.value.suggested_filename == "lens_ed25519"
    with open(download.value.path()) as private_key:
        assert private_key.read().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")

    fingerprint = KeyPair.objects.get(user=student.user).fingerprint
    expect(page.get_by_test_id("fingerprint")).to_have_text(fingerprint, timeout=10_000)
    expect(page.get_by_text("Lens kept no copy")).to_be_visible()
    page.screenshot(path=str(screenshot_dir / "ssh-key-generated.png"), full_page=True)

    # Replacing asks first; declining keeps the key.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_test_id("generate").click()
    page.wait_for_timeout(2000)
    assert KeyPair.objects.get(user=student.user).fingerprint == fingerprint
