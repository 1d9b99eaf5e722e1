"""The activity agent: its token, the user data that installs it, and its heartbeats.

CloudWatch sees CPU and network, not a student reading a notebook or typing in
a terminal. So every workspace boots with a small agent that reports Jupyter
kernel and SSH activity to Lens each minute, authenticated by a token made for
that workspace. Lens keeps only the token's hash; the plain token exists in
the instance's user data and nowhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from provisioning.broadcast import broadcast_member_workspaces
from provisioning.models import Workspace
from provisioning.states import State

AGENT_PATH = "/usr/local/bin/lens-agent"
CONF_PATH = "/etc/lens-agent.conf"


class AgentRefused(Exception):
    """A heartbeat Lens will not take; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.message, self.status = message, status


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def agent_token_issue(*, workspace: Workspace) -> str:
    """A new random token for the workspace's agent; only its hash is saved."""
    token = secrets.token_urlsafe(32)
    Workspace.objects.filter(pk=workspace.pk).update(agent_token_hash=_digest(token))
    workspace.agent_token_hash = _digest(token)
    return token


def heartbeat_url(workspace_id: int) -> str:
    return f"{settings.LENS_PUBLIC_URL}/api/workspaces/{workspace_id}/heartbeat/"


# --- the agent and its installer -------------------------------------------

# Runs on the workspace as root. Standard library only: the image may have
# nothing but python3.
_AGENT = r'''#!/usr/bin/env python3
"""Lens activity agent: tells Lens whether anyone is using this machine."""
import glob
import json
import os
import time
import urllib.request
from datetime import datetime, timezone

RECENT = 600  # seconds: a kernel or terminal used this recently counts as activity
RUNTIME = ["/root/.local/share/jupyter/runtime", "/home/*/.local/share/jupyter/runtime",
           "/run/user/*/jupyter", "/tmp/jupyter*/runtime"]


def config():
    values = {}
    with open("/etc/lens-agent.conf") as handle:
        for line in handle:
            key, _, value = line.strip().partition("=")
            if key:
                values[key] = value
    return values


def ssh_activity(now):
    """Open SSH connections, and terminals typed into recently (as `who -u` judges idle)."""
    connections = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[1].endswith(":0016") and fields[3] == "01":
                connections += 1
    sessions = 0
    for tty in glob.glob("/dev/pts/[0-9]*"):
        try:
            if now - os.stat(tty).st_atime < RECENT:
                sessions += 1
        except OSError:
            pass
    return connections, sessions


def jupyter_activity(now):
    """Busy kernels, and whether any kernel ran something recently, on every local server."""
    busy, recent, servers = 0, False, 0
    seen = set()
    for pattern in RUNTIME:
        for path in glob.glob(os.path.join(pattern, "*server-*.json")):
            try:
                with open(path) as handle:
                    info = json.load(handle)
                url = info["url"].rstrip("/") + "/api/kernels"
                if url in seen:
                    continue
                seen.add(url)
                request = urllib.request.Request(
                    url, headers={"Authorization": "token " + info.get("token", "")})
                with urllib.request.urlopen(request, timeout=5) as response:
                    kernels = json.load(response)
            except Exception:
                continue
            servers += 1
            for kernel in kernels:
                if kernel.get("execution_state") == "busy":
                    busy += 1
                stamp = kernel.get("last_activity", "")
                try:
                    at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                except ValueError:
                    continue
                recent = recent or now - at < RECENT
    return servers, busy, recent


def report(conf):
    now = time.time()
    connections, sessions = ssh_activity(now)
    servers, busy, recent = jupyter_activity(now)
    body = json.dumps({
        "jupyter_servers": servers, "jupyter_kernels_busy": busy, "jupyter_active": recent,
        "ssh_connections": connections, "ssh_sessions": sessions,
        "at": datetime.now(timezone.utc).isoformat(),
    }).encode()
    request = urllib.request.Request(
        conf["LENS_URL"], data=body, method="POST",
        headers={"Authorization": "Bearer " + conf["TOKEN"],
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass


def main():
    conf = config()
    interval = max(30, int(conf.get("INTERVAL", "60")))
    while True:
        try:
            report(conf)
        except Exception as exc:  # Lens unreachable: try again next time
            print("lens-agent:", exc, flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    main()
'''

_UNIT = """[Unit]
Description=Lens activity agent (reports Jupyter and SSH activity for idle auto-stop)
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/lens-agent
Restart=always
RestartSec=30

[Install]
WantedBy=multi-user.target
"""


def agent_install_script(*, workspace_id: int, token: str) -> str:
    """The shell script that writes the agent, its configuration and its service."""
    url = heartbeat_url(workspace_id)
    if any(c in url for c in "\r\n") or not token.replace("-", "").replace("_", "").isalnum():
        raise ValueError("The heartbeat URL and token must be single-line and URL-safe.")
    conf = f"LENS_URL={url}\nWORKSPACE={workspace_id}\nTOKEN={token}\n" \
           f"INTERVAL={settings.LENS_AGENT_INTERVAL_SECONDS}\n"
    return "\n".join([
        "#!/bin/sh",
        "# Lens activity agent: reports Jupyter kernel and SSH activity so that Lens",
        "# does not stop a machine someone is using.",
        "set -eu",
        "umask 077",
        f"cat > {CONF_PATH} <<'LENS_AGENT_CONF'",
        conf + "LENS_AGENT_CONF",
        "umask 022",
        f"cat > {AGENT_PATH} <<'LENS_AGENT_PY'",
        _AGENT + "LENS_AGENT_PY",
        f"chmod 755 {shlex.quote(AGENT_PATH)}",
        "if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then",
        "  cat > /etc/systemd/system/lens-agent.service <<'LENS_AGENT_UNIT'",
        _UNIT + "LENS_AGENT_UNIT",
        "  systemctl daemon-reload",
        "  systemctl enable --now lens-agent.service",
        "else",
        f"  nohup {AGENT_PATH} >/var/log/lens-agent.log 2>&1 &",
        "fi",
        "",
    ])


_PART_TYPES = (("#cloud-config", "cloud-config"), ("#!", "x-shellscript"),
               ("#cloud-boothook", "cloud-boothook"), ("#include", "x-include-url"),
               ("## template: jinja", "jinja2"))


def user_data_build(*, bootstrap: str, workspace_id: int, token: str) -> str:
    """The template's bootstrap followed by the agent installer, as cloud-init user data.

    With a bootstrap, both go in one MIME multipart document, so a
    `#cloud-config` bootstrap keeps working (plain appending would break it);
    cloud-init runs the parts in order.
    """
    agent = agent_install_script(workspace_id=workspace_id, token=token)
    if not bootstrap.strip():
        return agent
    message = MIMEMultipart(boundary="==LENS-USER-DATA==")
    first = bootstrap.lstrip().splitlines()[0]
    subtype = next((sub for prefix, sub in _PART_TYPES if first.startswith(prefix)), "plain")
    for name, text, sub in (("bootstrap", bootstrap, subtype),
                            ("lens-agent.sh", agent, "x-shellscript")):
        # 7-bit text when it is ASCII, so the parts stay readable in the console.
        part = MIMEText(text, sub, "us-ascii" if text.isascii() else "utf-8")
        part.add_header("Content-Disposition", "attachment", filename=name)
        message.attach(part)
    return message.as_string()


# --- heartbeats ---------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    recorded: bool  # False: too soon after the last one, ignored
    active: bool


def report_is_activity(report: dict) -> bool:
    """Someone is at the machine: a kernel is running or ran lately, or a terminal is in use."""
    return bool(report.get("jupyter_kernels_busy") or report.get("jupyter_active")
                or report.get("ssh_sessions"))


def heartbeat_record(*, workspace_id: int, token: str, report: dict,
                     now: datetime) -> Heartbeat:
    """Take one agent report: activity moves `last_activity_at` and lifts an idle warning.

    Unknown workspace and wrong token are refused alike (403), so the answer
    does not tell a guesser which workspaces exist. One select and at most
    one conditional update: reports closer than LENS_HEARTBEAT_MIN_SECONDS are
    ignored, even when two arrive at once.
    """
    row = (Workspace.objects.filter(pk=workspace_id)
           .values("agent_token_hash", "state", "owner_id", "idle_warned_at",
                   "job_finished_at").first())
    if row is None or not row["agent_token_hash"] or not hmac.compare_digest(
            row["agent_token_hash"], _digest(token)):
        raise AgentRefused("This token is not valid for this workspace.", status=403)
    if row["state"] != State.RUNNING:
        raise AgentRefused("The workspace is not running.", status=409)
    active = report_is_activity(report)
    fields: dict = {"last_heartbeat_at": now, "last_heartbeat": report}
    if active:
        fields |= {"last_activity_at": now, "idle_warned_at": None, "idle_stop_at": None,
                   "job_finished_at": None}
    cutoff = now - timedelta(seconds=settings.LENS_HEARTBEAT_MIN_SECONDS)
    recorded = bool(Workspace.objects.filter(pk=workspace_id, state=State.RUNNING).filter(
        Q(last_heartbeat_at__isnull=True) | Q(last_heartbeat_at__lte=cutoff)).update(**fields))
    if recorded and active and (row["idle_warned_at"] or row["job_finished_at"]):
        owner_id = row["owner_id"]  # the card's idle warning goes away
        transaction.on_commit(lambda: broadcast_member_workspaces(membership_id=owner_id))
    return Heartbeat(recorded=recorded, active=active)
