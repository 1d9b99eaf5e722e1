"""How to reach a workspace: the exact ssh command and Jupyter URL, or why not yet."""

from __future__ import annotations

from dataclasses import dataclass

from provisioning.models import KeyPair, Workspace
from provisioning.states import State

SSH_PORT = 22
JUPYTER_PORT = 8888
_PLACEHOLDER = "<address>"


@dataclass(frozen=True)
class ConnectInfo:
    ready: bool  # running, with an address to connect to
    why_not: str  # shown under a greyed-out panel when not ready
    ssh_command: str  # "" when the template opens no SSH port
    jupyter_url: str  # "" when the template opens no Jupyter port
    key_note: str  # about the owner's key, when the command alone is not enough
    key_fingerprint: str  # the owner's current key, shown to the owner only


def _why_not(workspace: Workspace) -> str:
    state = State(workspace.state)
    if state in {State.REQUESTED, State.PENDING}:
        return "The workspace is starting; its address appears here when it is running."
    if state == State.STOPPED:
        return "The workspace is stopped. Start it to connect; it gets a new address each start."
    if state in {State.STOPPING, State.HIBERNATING}:
        return "The workspace is stopping."
    if state == State.FAILED:
        return "The workspace failed to start, so there is nothing to connect to."
    if state == State.RUNNING:
        return "The workspace is running but has no public address yet; this page updates."
    return "The workspace no longer exists."


def _owner_key(workspace: Workspace) -> KeyPair | None:
    user = workspace.owner.user
    if user is None:
        return None
    try:
        return user.ssh_key
    except KeyPair.DoesNotExist:
        return None


def _key_note(workspace: Workspace, key: KeyPair | None, viewer_is_owner: bool) -> str:
    owner = workspace.owner.display_name
    if not workspace.key_name:
        if not viewer_is_owner:
            return "" if workspace.state == State.REQUESTED else (
                f"Launched without an SSH key: {owner} connects through Jupyter.")
        if key is None:
            return "Add an SSH key to connect with ssh; Jupyter works without one."
        if workspace.state in {State.REQUESTED, State.FAILED}:
            return ""
        return ("This workspace was launched before you added your SSH key, so ssh will not "
                "let you in until it is reset. Jupyter works without one.")
    if key is None or key.aws_key_name != workspace.key_name:
        whose = "your" if viewer_is_owner else f"{owner}'s"
        return (f"This workspace accepts {whose} earlier key, the one it was launched with; "
                "it takes the current key after a reset.")
    return "" if viewer_is_owner else f"The command works with {owner}'s private key only."


def workspace_connect(*, workspace: Workspace, viewer_is_owner: bool) -> ConnectInfo:
    """What the connect panel shows. Reads the owner's key from `workspace.owner.user`,
    so callers showing many cards select_related("owner__user__ssh_key")."""
    host = workspace.public_dns or workspace.public_ip or ""
    ready = workspace.state == State.RUNNING and bool(host)
    ports = workspace.template.port_list
    key = _owner_key(workspace)
    path = key.private_key_path if key is not None else "~/.ssh/lens_ed25519"
    if workspace.key_name and (key is None or key.aws_key_name != workspace.key_name):
        path = "~/.ssh/<your earlier key>"
    target = f"{workspace.template.login_user}@{host or _PLACEHOLDER}"
    ssh = f"ssh -i {path} {target}" if SSH_PORT in ports else ""
    jupyter = f"http://{host or _PLACEHOLDER}:{JUPYTER_PORT}/" if JUPYTER_PORT in ports else ""
    note = _key_note(workspace, key, viewer_is_owner) if ssh else ""
    return ConnectInfo(ready=ready, why_not="" if ready else _why_not(workspace),
                       ssh_command=ssh, jupyter_url=jupyter, key_note=note,
                       key_fingerprint=key.fingerprint if key and viewer_is_owner else "")
