"""Real-browser tests: Debian's Chromium via Playwright, against daphne and a
real Celery worker serving the test database. Run in their own pytest process
(`make test-e2e`), with DJANGO_ALLOW_ASYNC_UNSAFE=true."""

from pathlib import Path

import pytest

from lens.celery import app as celery_app
from tests.stack import celery_worker, web_server

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "var" / "test-logs"
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"],
    }


@pytest.fixture
def real_passwords(settings):
    """The server process checks passwords with the production hashers."""
    from django.conf import global_settings

    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS


@pytest.fixture
def live_lens(transactional_db, fake_aws, real_passwords):
    celery_app.conf.task_always_eager = False
    with celery_worker(fake_aws, LOGS), web_server(fake_aws, LOGS) as url:
        yield url


@pytest.fixture
def screenshot_dir():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
