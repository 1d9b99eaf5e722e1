"""Per-person SSH keys: upload or generate, and put on the owner's machines only.

Lens keeps the public half. A generated private key is returned to the
caller once and exists nowhere else afterwards: not in the database, not in
a log, not in a cache. At launch the owner's public key is imported into the
cloud account under a name made of their user id and the key's fingerprint
(`ImportKeyPair`, idempotent by name) and passed as the instance's KeyName;
nothing else about a key reaches AWS, and nobody else's key ever does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from django.db import IntegrityError, transaction
from django.utils import timezone

from provisioning import aws
from provisioning.models import CloudAccount, KeyPair, Workspace
from provisioning.states import ACTIVE_STATES, State

MIN_RSA_BITS = 2048
MAX_KEY_TEXT = 16_000
GENERATED_FILENAME = "lens_ed25519"
_ACCEPTED = {"ssh-ed25519", "ssh-rsa"}
_HOW_TO = "Make one with: ssh-keygen -t ed25519 -f ~/.ssh/lens_ed25519"


class KeyRefused(ValueError):
    """A key Lens will not take; `field` names the form field the message belongs to."""

    def __init__(self, message: str, *, field: str = "public_key"):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    line: str  # "type base64 [comment]", normalised to one line
    comment: str
    fingerprint: str


def fingerprint_of(blob: bytes) -> str:
    """SHA256:… exactly as `ssh-keygen -l` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def public_key_parse(*, text: str) -> PublicKey:
    """Check an OpenSSH public key line and describe it, or raise KeyRefused saying why."""
    text = (text or "").strip()
    if not text:
        raise KeyRefused("Paste your public key (the contents of a .pub file).")
    if len(text) > MAX_KEY_TEXT:
        raise KeyRefused("That is far longer than an SSH public key.")
    if "PRIVATE KEY" in text:
        raise KeyRefused("That is a private key. Paste the public key (the .pub file) instead, "
                         "and keep the private key to yourself: Lens never needs it.")
    if "\n" in text:
        raise KeyRefused("Paste one key, on one line.")
    parts = text.split(None, 2)
    key_type = parts[0]
    if key_type.startswith("ecdsa-sha2-") or key_type.startswith("sk-"):
        raise KeyRefused(f"AWS EC2 accepts only ed25519 and RSA keys, not {key_type}. "
                         + _HOW_TO)
    if key_type == "ssh-dss":
        raise KeyRefused("DSA keys are no longer safe and EC2 refuses them. " + _HOW_TO)
    if key_type not in _ACCEPTED or len(parts) < 2:
        raise KeyRefused("That does not look like an OpenSSH public key; it should start with "
                         "ssh-ed25519 or ssh-rsa. " + _HOW_TO)
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (name_length,) = struct.unpack(">I", blob[:4])
        embedded_type = blob[4:4 + name_length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        raise KeyRefused("The key's data is damaged (it is not valid base64); copy the whole "
                         "line again.") from None
    if embedded_type != key_type:
        raise KeyRefused(f"The key says it is {key_type} but its data is {embedded_type or '?'}; "
                         "copy the whole line again.")
    try:
        loaded = serialization.load_ssh_public_key(f"{key_type} {parts[1]}".encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyRefused(f"The key's data is damaged ({exc}); copy the whole line "
                         "again.") from None
    if isinstance(loaded, rsa.RSAPublicKey) and loaded.key_size < MIN_RSA_BITS:
        raise KeyRefused(f"This RSA key has {loaded.key_size} bits; Lens needs at least "
                         f"{MIN_RSA_BITS}. " + _HOW_TO)
    comment = re.sub(r"[^\x20-\x7e]", "", parts[2] if len(parts) > 2 else "").strip()[:100]
    line = f"{key_type} {parts[1]}" + (f" {comment}" if comment else "")
    return PublicKey(key_type=key_type, line=line, comment=comment,
                     fingerprint=fingerprint_of(blob))


def key_get(*, user) -> KeyPair | None:
    return KeyPair.objects.filter(user=user).first()


def _key_save(*, user, parsed: PublicKey, source: str) -> KeyPair:
    """Make `parsed` the user's one key; refuse a key someone else already has."""
    try:
        with transaction.atomic():
            key, _ = KeyPair.objects.update_or_create(user=user, defaults={
                "name": parsed.comment, "key_type": parsed.key_type,
                "public_key": parsed.line, "fingerprint": parsed.fingerprint,
                "source": source, "created_at": timezone.now()})
    except IntegrityError:
        raise KeyRefused("This key is already registered to another Lens account. Everyone "
                         "needs their own key: make a new one for yourself. " + _HOW_TO
                         ) from None
    return key


def key_upload(*, user, public_key: str) -> KeyPair:
    """Make an uploaded public key the user's key (replacing any earlier one)."""
    parsed = public_key_parse(text=public_key)
    current = key_get(user=user)
    if current is not None and current.fingerprint == parsed.fingerprint:
        return current
    return _key_save(user=user, parsed=parsed, source=KeyPair.Source.UPLOADED)


def key_generate(*, user) -> tuple[KeyPair, bytes]:
    """A new ed25519 key for the user: saves the public half, returns the private half.

    The caller hands the private key to the person once; Lens keeps no copy.
    """
    private = ed25519.Ed25519PrivateKey.generate()
    comment = f"lens-{user.get_username()}"[:100]
    public_line = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    parsed = public_key_parse(text=f"{public_line} {comment}")
    key = _key_save(user=user, parsed=parsed, source=KeyPair.Source.GENERATED)
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.OpenSSH,
                                        serialization.NoEncryption())
    return key, private_pem


def key_delete(*, user) -> bool:
    """Remove the user's key; machines already running keep it until reset."""
    deleted, _ = KeyPair.objects.filter(user=user).delete()
    return bool(deleted)


def workspaces_on_other_key_count(*, user, key: KeyPair | None) -> int:
    """How many of the user's live workspaces accept a key other than `key` (or none)."""
    live = (Workspace.objects.filter(owner__user=user)
            .filter(state__in=[*ACTIVE_STATES, State.STOPPED]).exclude(key_name=""))
    if key is not None:
        live = live.exclude(key_name=key.aws_key_name)
    return live.count()


def launch_key_name(*, account: CloudAccount, workspace: Workspace) -> str:
    """Import the workspace owner's key into the account; "" when they have none.

    Only the owner's key: a workspace never carries anyone else's, whoever
    launches it and whatever course it is in.
    """
    user_id = workspace.owner.user_id
    key = KeyPair.objects.filter(user_id=user_id).first() if user_id else None
    if key is None:
        return ""
    aws.key_pair_ensure(account, name=key.aws_key_name, public_key=key.public_key,
                        tags={"lens:user": str(user_id)})
    return key.aws_key_name
