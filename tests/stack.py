"""Real processes for integration tests: a Celery worker and the ASGI server,
started against the test database, the test Redis and the test moto server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from django.conf import settings

from tests.conftest import free_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    db = settings.DATABASES["default"]
    auth = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(aws_endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "AWS_ENDPOINT_URL": aws_endpoint,
        "DEBUG": "true",
        "LENS_POLL_SECONDS": "1",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
    }


def _wait_for(check, seconds: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log.read_text()[-3000:]}")
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready in {seconds}s:\n{log.read_text()[-3000:]}")


@contextmanager
def running(command: list[str], *, env: dict, log: Path, ready, what: str):
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_for(ready, 60, what, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def celery_worker(aws_endpoint: str, log_dir: Path):
    log = log_dir / "worker.log"
    command = [str(BIN / "celery"), "-A", "lens", "worker", "--pool=solo", "-l", "info",
               "-n", f"test-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    with running(command, env=child_env(aws_endpoint), log=log, what="celery worker",
                 ready=lambda: log.exists() and b"ready." in log.read_bytes()) as proc:
        yield proc


@contextmanager
def web_server(aws_endpoint: str, log_dir: Path):
    import urllib.request

    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return urllib.request.urlopen(url + "/", timeout=1).status == 200
        except OSError:
            return False

    command = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "lens.asgi:application"]
    with running(command, env=child_env(aws_endpoint), log=log_dir / "web.log",
                 what="daphne", ready=ready):
        yield url
