"""A student's GPU launch waits in line while the one slot is taken, shows its place,
and starts by itself, without a reload, when the holder stops."""

import time

import pytest
from playwright.sync_api import expect

from provisioning import services
from provisioning.models import Workspace
from provisioning.states import State
from tests.factories import PASSWORD, ApprovedTemplateFactory, MembershipFactory, TemplateFactory

pytestmark = pytest.mark.e2e


def wait_for_state(workspace, state, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        workspace.refresh_from_db()
        if workspace.state == state:
            return workspace
        time.sleep(0.5)
    raise AssertionError(f"{workspace.name} is {workspace.state}, not {state}")


def test_a_queued_gpu_launch_is_admitted_live_when_the_holder_stops(
        live_lens, page, course, prices, student, screenshot_dir):
    gpu = TemplateFactory(slug="gpu-lab", name="GPU lab", instance_type="g4dn.xlarge")
    ApprovedTemplateFactory(course=course, template=gpu, capacity=1)
    holder = MembershipFactory(course=course, user__username="holder")
    held = services.workspace_launch(membership=holder, template_slug="gpu-lab", name="resnet",
                                     actor=holder.user)
    wait_for_state(held, State.RUNNING)

    page.goto(f"{live_lens}/accounts/login/")
    page.fill("input[name=login]", student.user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("section.course")).to_have_attribute("data-live", "open")
    page.evaluate("window.__noReload = true")
    page.check(f"#t-{student.pk}-gpu-lab")
    page.fill("input[name=name]", "cnn")
    page.get_by_role("button", name="Launch").click()

    card = page.locator("article.ws", has_text="cnn")
    expect(card.get_by_test_id("state")).to_have_text("Queued")
    expect(card.get_by_test_id("queue-position")).to_contain_text(
        "Waiting for a GPU slot — you are 1st in line (1 slot, all in use)")
    page.screenshot(path=str(screenshot_dir / "gpu-queued.png"), full_page=True)

    services.workspace_stop(workspace=Workspace.objects.get(pk=held.pk), actor=None)

    expect(card.get_by_test_id("state")).to_have_text("Running", timeout=60_000)
    assert page.evaluate("window.__noReload") is True
    page.screenshot(path=str(screenshot_dir / "gpu-admitted.png"), full_page=True)
