"""LTI 1.3 from an LMS (Canvas first): sign-in by launch, and roster sync.

The launch is OpenID Connect's third-party-initiated login: the LMS calls
/lti/login/, we send the browser to the LMS's authorization URL with a state
and nonce we remember (server side: the LMS posts the launch back cross-site,
where a SameSite=Lax session cookie is not sent), and the LMS posts a signed
id_token to /lti/launch/. Nothing in the token is believed before its
signature checks out against the keys the LMS publishes.

Roster sync uses Names and Role Provisioning Services: the tool signs a
client-credentials assertion with its own key, trades it for an access token,
and reads the context's members page by page. It adds people and raises
roles; it never lowers a role or removes anyone (the LMS can be wrong about a
TA Lens added by hand), it reports who the LMS no longer lists instead.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode, urlparse

import jwt
import requests
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone
from jwt.algorithms import RSAAlgorithm

from courses.models import Course, LtiContext, LtiLoginState, LtiPlatform, LtiToolKey, Membership

log = logging.getLogger(__name__)

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
CLAIM_MESSAGE_TYPE = CLAIM + "message_type"
CLAIM_VERSION = CLAIM + "version"
CLAIM_DEPLOYMENT_ID = CLAIM + "deployment_id"
CLAIM_ROLES = CLAIM + "roles"
CLAIM_CONTEXT = CLAIM + "context"
CLAIM_RESOURCE_LINK = CLAIM + "resource_link"
CLAIM_NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
NRPS_MEDIA_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
RESOURCE_LINK_REQUEST = "LtiResourceLinkRequest"
LTI_VERSION = "1.3.0"

ROLE_VOCAB = "http://purl.imsglobal.org/vocab/lis/v2/membership"
_TA_ROLES = {f"{ROLE_VOCAB}#TeachingAssistant", f"{ROLE_VOCAB}/Instructor#TeachingAssistant",
             "TeachingAssistant"}
_INSTRUCTOR_ROLES = {f"{ROLE_VOCAB}#Instructor", "Instructor"}
_LEARNER_ROLES = {f"{ROLE_VOCAB}#Learner", "Learner"}
# A role is only ever raised by the LMS, never lowered.
ROLE_RANK = {Membership.Role.STUDENT: 0, Membership.Role.TA: 1, Membership.Role.HEAD_TA: 2,
             Membership.Role.INSTRUCTOR: 3}

STATE_TTL = timedelta(minutes=10)
CLOCK_LEEWAY_SECONDS = 10
HTTP_TIMEOUT_SECONDS = 10
JWKS_CACHE_SECONDS = 300
MAX_NRPS_PAGES = 500


class LtiError(Exception):
    """A launch or sync refused, with a message meant for the person who sees it."""

    status = 400


class LtiForbidden(LtiError):
    status = 403


class LtiTransientError(LtiError):
    """The LMS could not be reached or answered 5xx: worth trying again later."""

    status = 502


# --- the tool's own key ------------------------------------------------------


def _fernet() -> Fernet:
    """Encryption for the private key at rest, derived from SECRET_KEY (so
    changing SECRET_KEY means making a new tool key and re-registering it)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"lens-lti-tool-key",
               info=b"private-key-at-rest").derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


def lti_tool_key_create() -> LtiToolKey:
    """Make a new RSA key pair; its public half is published at once."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return LtiToolKey.objects.create(kid=kid, public_jwk=jwk,
                                     private_key_encrypted=_fernet().encrypt(pem))


def lti_tool_key_current() -> LtiToolKey:
    """The key the tool signs with (the newest active one), made on first use.

    Two first uses at once may both make a key; both are published, so either
    signature verifies.
    """
    return LtiToolKey.objects.filter(is_active=True).first() or lti_tool_key_create()


def lti_tool_jwks() -> dict:
    """The tool's public keys, as the LMS fetches them from /lti/jwks/."""
    lti_tool_key_current()
    return {"keys": [k.public_jwk for k in LtiToolKey.objects.filter(is_active=True)]}


def _tool_private_key(key: LtiToolKey) -> rsa.RSAPrivateKey:
    pem = _fernet().decrypt(bytes(key.private_key_encrypted))
    return serialization.load_pem_private_key(pem, password=None)


def lti_tool_urls() -> dict[str, str]:
    """What an LMS administrator types into the LMS when registering Lens."""
    base = settings.SITE_URL.rstrip("/")
    return {
        "login": base + reverse("lti-login"),
        "launch": base + reverse("lti-launch"),
        "jwks": base + reverse("lti-jwks"),
        "canvas_config": base + reverse("lti-canvas-config"),
    }


def lti_canvas_config() -> dict:
    """A Canvas developer-key configuration ("Enter URL" in Canvas).

    It opens Lens in a new tab: Lens pages refuse to be framed, and browsers
    that block third-party cookies would lose the sign-in inside an iframe.
    """
    urls = lti_tool_urls()
    return {
        "title": "Lens",
        "description": "Cloud workstations for the course, with budgets that cannot be broken.",
        "oidc_initiation_url": urls["login"],
        "target_link_uri": urls["launch"],
        "public_jwk_url": urls["jwks"],
        "scopes": [NRPS_SCOPE],
        "extensions": [{
            "platform": "canvas.instructure.com",
            "privacy_level": "public",
            "settings": {"placements": [{
                "placement": "course_navigation",
                "message_type": RESOURCE_LINK_REQUEST,
                "target_link_uri": urls["launch"],
                "text": "Lens",
                "windowTarget": "_blank",
            }]},
        }],
        "custom_fields": {},
    }


# --- login initiation --------------------------------------------------------


def _platform_for(*, issuer: str, client_id: str) -> LtiPlatform:
    platforms = LtiPlatform.objects.filter(issuer=issuer, is_active=True)
    if client_id:
        platforms = platforms.filter(client_id=client_id)
    found = list(platforms[:2])
    if not found:
        raise LtiError(f"This LMS (issuer {issuer}" + (f", client id {client_id}" if client_id
                       else "") + ") is not registered with Lens. Ask a Lens administrator to "
                       "add it under LTI platforms.")
    if len(found) > 1:
        raise LtiError(f"Lens has several registrations for {issuer}; the LMS must send its "
                       "client_id with the login request.")
    return found[0]


def lti_login_start(*, params: Mapping[str, str]) -> str:
    """Begin an OIDC login for the LMS that called us; returns where to send the browser."""
    issuer, login_hint = params.get("iss", ""), params.get("login_hint", "")
    target = params.get("target_link_uri", "")
    missing = [name for name, value in (("iss", issuer), ("login_hint", login_hint),
                                        ("target_link_uri", target)) if not value]
    if missing:
        raise LtiError(f"The LMS's login request lacks {', '.join(missing)}.")
    if urlparse(target).netloc != urlparse(settings.SITE_URL).netloc:
        raise LtiError(f"The LMS asked to open {target}, which is not this Lens "
                       f"({settings.SITE_URL}). Check the tool's target link URI in the LMS.")
    platform = _platform_for(issuer=issuer, client_id=params.get("client_id", ""))
    deployment = params.get("lti_deployment_id", "")
    if deployment and deployment not in platform.deployment_ids:
        raise LtiError(_unknown_deployment(platform, deployment))
    now = timezone.now()
    LtiLoginState.objects.filter(created_at__lt=now - timedelta(days=1)).delete()
    login = LtiLoginState.objects.create(state=secrets.token_urlsafe(32),
                                         nonce=secrets.token_urlsafe(32), platform=platform)
    query = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": platform.client_id,
        "redirect_uri": lti_tool_urls()["launch"],
        "login_hint": login_hint,
        "state": login.state,
        "nonce": login.nonce,
    }
    if params.get("lti_message_hint"):
        query["lti_message_hint"] = params["lti_message_hint"]
    separator = "&" if urlparse(platform.auth_login_url).query else "?"
    return f"{platform.auth_login_url}{separator}{urlencode(query)}"


def _unknown_deployment(platform: LtiPlatform, deployment: str) -> str:
    return (f"Deployment {deployment} of {platform.name} is not allowed to launch Lens. A Lens "
            "administrator can add it to the platform's deployment ids.")


# --- launch ------------------------------------------------------------------

_jwks_clients: dict[str, jwt.PyJWKClient] = {}
_jwks_lock = threading.Lock()


def _jwks_client(url: str) -> jwt.PyJWKClient:
    """One client per key URL per process, so keys are fetched once per
    JWKS_CACHE_SECONDS (and again when a token names a key we have not seen)."""
    with _jwks_lock:
        client = _jwks_clients.get(url)
        if client is None:
            client = _jwks_clients[url] = jwt.PyJWKClient(
                url, lifespan=JWKS_CACHE_SECONDS, timeout=HTTP_TIMEOUT_SECONDS,
                cooldown_duration=0)
        return client


def _id_token_decode(*, platform: LtiPlatform, id_token: str) -> dict:
    try:
        signing_key = _jwks_client(platform.jwks_url).get_signing_key_from_jwt(id_token)
    except jwt.PyJWKClientConnectionError as exc:
        raise LtiTransientError(f"Lens could not fetch {platform.name}'s keys; try again in a "
                                "minute.") from exc
    except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
        raise LtiError(f"The launch is not signed with a key {platform.name} publishes.") from exc
    try:
        claims = jwt.decode(id_token, signing_key.key, algorithms=["RS256"],
                            audience=platform.client_id, issuer=platform.issuer,
                            leeway=CLOCK_LEEWAY_SECONDS,
                            options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]})
    except jwt.ExpiredSignatureError as exc:
        raise LtiError("The launch has expired. Open Lens from the LMS again.") from exc
    except jwt.InvalidAudienceError as exc:
        raise LtiError("The launch was meant for another tool (its audience is not Lens's "
                       "client id).") from exc
    except jwt.InvalidIssuerError as exc:
        raise LtiError("The launch comes from a different LMS than the login did.") from exc
    except jwt.InvalidSignatureError as exc:
        raise LtiError("The launch's signature does not verify; it was altered or forged.") \
            from exc
    except jwt.InvalidTokenError as exc:
        raise LtiError(f"The launch's token is not valid: {exc}.") from exc
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != platform.client_id:
        raise LtiError("The launch names several audiences but not Lens as the authorized one.")
    return claims


def lti_launch_validate(*, id_token: str, state: str) -> tuple[LtiPlatform, dict]:
    """Check a launch end to end; returns the platform and the token's claims.

    The state (and with it the nonce) is spent first, with a compare-and-swap,
    so a launch can be used once even when posted twice at the same moment.
    """
    if not id_token or not state:
        raise LtiError("The launch lacks its id_token or state. Open Lens from the LMS again.")
    login = LtiLoginState.objects.select_related("platform").filter(state=state).first()
    now = timezone.now()
    if login is None or login.created_at < now - STATE_TTL:
        raise LtiError("This launch is unknown or has expired. Open Lens from the LMS again.")
    if not LtiLoginState.objects.filter(pk=login.pk, used_at__isnull=True).update(used_at=now):
        raise LtiError("This launch was already used. Open Lens from the LMS again.")
    platform = login.platform
    claims = _id_token_decode(platform=platform, id_token=id_token)
    if not secrets.compare_digest(str(claims.get("nonce", "")), login.nonce):
        raise LtiError("The launch's nonce does not match the login; it may be a replay.")
    if claims.get(CLAIM_MESSAGE_TYPE) != RESOURCE_LINK_REQUEST:
        raise LtiError(f"Lens handles resource link launches only, not "
                       f"{claims.get(CLAIM_MESSAGE_TYPE)!r}.")
    if claims.get(CLAIM_VERSION) != LTI_VERSION:
        raise LtiError(f"Lens speaks LTI {LTI_VERSION}, the LMS sent version "
                       f"{claims.get(CLAIM_VERSION)!r}.")
    deployment = claims.get(CLAIM_DEPLOYMENT_ID, "")
    if deployment not in platform.deployment_ids:
        raise LtiError(_unknown_deployment(platform, deployment))
    if not (claims.get(CLAIM_CONTEXT) or {}).get("id"):
        raise LtiError("The launch does not say which LMS course it comes from. Add Lens to a "
                       "course, not to the account.")
    if not (claims.get(CLAIM_RESOURCE_LINK) or {}).get("id"):
        raise LtiError("The launch lacks its resource link.")
    return platform, claims


def lti_role_map(roles: list[str] | None) -> str | None:
    """Lens role for a list of LIS membership roles, or None when none applies.

    A teaching assistant wins over Instructor, since Canvas may send both and
    a TA must not become an instructor. Institution roles are ignored.
    """
    roles = set(roles or [])
    if roles & _TA_ROLES:
        return Membership.Role.TA
    if roles & _INSTRUCTOR_ROLES:
        return Membership.Role.INSTRUCTOR
    if roles & _LEARNER_ROLES:
        return Membership.Role.STUDENT
    return None


@dataclass(frozen=True)
class LaunchResult:
    user: object
    role: str
    context: LtiContext
    membership: Membership | None


def _context_upsert(*, platform: LtiPlatform, claims: dict) -> LtiContext:
    context_claim = claims[CLAIM_CONTEXT]
    nrps = claims.get(CLAIM_NRPS) or {}
    context, _ = LtiContext.objects.select_for_update().get_or_create(
        platform=platform, context_id=str(context_claim["id"]),
        defaults={"deployment_id": claims[CLAIM_DEPLOYMENT_ID]})
    context.deployment_id = claims[CLAIM_DEPLOYMENT_ID]
    context.title = str(context_claim.get("title") or "")[:255]
    context.label = str(context_claim.get("label") or "")[:255]
    if nrps.get("context_memberships_url"):
        context.memberships_url = nrps["context_memberships_url"]
    context.save()
    return context


def _user_for_launch(*, email: str, claims: dict):
    """The Lens account with this email, made if there is none.

    The LMS vouches for the email; Lens administrators are not signed in this
    way, so a compromised LMS cannot take over an account that runs Lens.
    """
    from allauth.account.adapter import get_adapter

    User = get_user_model()
    user = User.objects.filter(email__iexact=email).order_by("pk").first()
    if user is None:
        username = get_adapter().generate_unique_username([email.split("@")[0], "user"])
        user = User(username=username, email=email,
                    first_name=str(claims.get("given_name") or "")[:150],
                    last_name=str(claims.get("family_name") or "")[:150])
        user.set_unusable_password()
        user.save()
        return user
    if user.is_staff or user.is_superuser:
        raise LtiForbidden("This is a Lens administrator account; it signs in with its password "
                           "or university sign-in, not from an LMS.")
    if not user.is_active:
        raise LtiForbidden("This Lens account is disabled.")
    return user


def _membership_from_launch(*, course: Course, user, role: str, name: str) -> Membership:
    membership, created = Membership.objects.select_for_update().get_or_create(
        course=course, email__iexact=user.email,
        defaults={"email": user.email, "user": user, "role": role, "name": name,
                  "status": Membership.Status.ACTIVE})
    if created:
        return membership
    if membership.status == Membership.Status.REVOKED:
        raise LtiForbidden(f"Your access to {course.code} was revoked in Lens. Ask the course's "
                           "instructor if this is a mistake.")
    membership.user = user
    membership.status = Membership.Status.ACTIVE
    if ROLE_RANK[role] > ROLE_RANK[membership.role]:
        membership.role = role
    membership.name = membership.name or name
    membership.save(update_fields=["user", "status", "role", "name"])
    return membership


def lti_launch_complete(*, platform: LtiPlatform, claims: dict) -> LaunchResult:
    """Turn validated claims into a Lens user and, when the LMS course is
    linked, an active membership with the LMS role (raised, never lowered)."""
    from courses.services import membership_claim_invitations

    roles = claims.get(CLAIM_ROLES) or []
    role = lti_role_map(roles)
    if role is None:
        raise LtiForbidden("Lens lets in instructors, teaching assistants and learners; your "
                           "role in this LMS course is none of them.")
    email = str(claims.get("email") or "").strip()
    if "@" not in email:
        raise LtiError("The LMS did not share your email address, which Lens needs to know "
                       "you. An LMS administrator can set the tool's privacy level to public.")
    name = str(claims.get("name") or "")[:200]
    with transaction.atomic():
        context = _context_upsert(platform=platform, claims=claims)
        user = _user_for_launch(email=email, claims=claims)
        membership = None
        if context.course_id is not None:
            membership = _membership_from_launch(course=context.course, user=user, role=role,
                                                 name=name)
    membership_claim_invitations(user=user)
    return LaunchResult(user=user, role=role, context=context, membership=membership)


def lti_context_link(*, context: LtiContext, course: Course) -> LtiContext:
    """Link an LMS course to a Lens course, once (compare-and-swap on the empty link).

    The caller has checked that the actor teaches both.
    """
    if not LtiContext.objects.filter(pk=context.pk, course__isnull=True).update(course=course):
        raise LtiError("This LMS course is already linked to a Lens course.")
    context.refresh_from_db()
    return context


# --- Names and Role Provisioning Services --------------------------------------


def _http(method: str, url: str, **kwargs) -> requests.Response:
    try:
        response = requests.request(method, url, timeout=HTTP_TIMEOUT_SECONDS, **kwargs)
    except requests.RequestException as exc:
        raise LtiTransientError(f"Could not reach the LMS at {url}: {exc}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise LtiTransientError(f"The LMS answered {response.status_code} at {url}.")
    if response.status_code >= 400:
        raise LtiError(f"The LMS refused ({response.status_code}) at {url}: "
                       f"{response.text[:300]}")
    return response


def lti_access_token(*, platform: LtiPlatform, scope: str) -> str:
    """An access token from the LMS, for a client_credentials grant with a JWT
    assertion signed by the tool's key (RFC 7523, as LTI's security framework asks)."""
    key = lti_tool_key_current()
    now = int(time.time())
    assertion = jwt.encode(
        {"iss": platform.client_id, "sub": platform.client_id,
         "aud": platform.token_audience or platform.auth_token_url,
         "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex},
        _tool_private_key(key), algorithm="RS256", headers={"kid": key.kid})
    response = _http("POST", platform.auth_token_url, data={
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        "scope": scope,
    }, headers={"Accept": "application/json"})
    try:
        token = response.json()["access_token"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LtiError("The LMS's token endpoint did not return an access token.") from exc
    return token


def lti_members_fetch(*, context: LtiContext) -> list[dict]:
    """Every member the LMS lists for the context, following `Link: rel=next`."""
    token = lti_access_token(platform=context.platform, scope=NRPS_SCOPE)
    headers = {"Authorization": f"Bearer {token}", "Accept": NRPS_MEDIA_TYPE}
    members: list[dict] = []
    url: str | None = context.memberships_url
    seen: set[str] = set()
    while url and url not in seen:
        if len(seen) >= MAX_NRPS_PAGES:
            raise LtiError(f"The LMS's member list ran past {MAX_NRPS_PAGES} pages.")
        seen.add(url)
        response = _http("GET", url, headers=headers)
        try:
            members.extend(response.json().get("members") or [])
        except (ValueError, AttributeError) as exc:
            raise LtiError("The LMS's member list is not the JSON NRPS describes.") from exc
        url = response.links.get("next", {}).get("url")
    return members


def lti_roster_sync(*, context_id: int) -> dict:
    """Bring the linked course's roster up to the LMS's member list; returns a report.

    New people join as invited (active when they already have a Lens
    account); roles only go up and empty names are filled in; revoked stays
    revoked; people the LMS no longer lists are reported, not removed.
    Running it again changes nothing.
    """
    context = (LtiContext.objects.select_related("platform", "course")
               .filter(pk=context_id).first())
    if context is None:
        raise LtiError("This LMS course link no longer exists.")
    if context.course is None:
        raise LtiError("This LMS course is not linked to a Lens course yet.")
    if not context.memberships_url:
        raise LtiError("The LMS has not offered a member list for this course; an instructor "
                       "must open Lens from the course once (with the tool's Names and Role "
                       "scope granted).")
    members = lti_members_fetch(context=context)
    report: dict = {"created": [], "updated": [], "unchanged": 0, "revoked_kept": [],
                    "skipped": [], "missing_from_lms": []}
    listed: dict[str, tuple[str, str]] = {}
    for member in members:
        who = member.get("email") or member.get("name") or member.get("user_id") or "?"
        if member.get("status", "Active") != "Active":
            report["skipped"].append({"member": who, "reason": "not active in the LMS"})
            continue
        email = str(member.get("email") or "").strip()
        if "@" not in email:
            report["skipped"].append({"member": who, "reason": "no email shared"})
            continue
        role = lti_role_map(member.get("roles"))
        if role is None:
            report["skipped"].append({"member": who, "reason": "no Lens role for "
                                      + ", ".join(member.get("roles") or [])})
            continue
        key = email.lower()
        if key not in listed or ROLE_RANK[role] > ROLE_RANK[listed[key][0]]:
            listed[key] = (role, email, str(member.get("name") or "")[:200])
    with transaction.atomic():
        course = Course.objects.select_for_update().get(pk=context.course_id)
        existing = {m.email.lower(): m for m in course.memberships.all()}
        users = {u.email_ci: u for u in get_user_model().objects.annotate(
            email_ci=Lower("email")).filter(email_ci__in=list(listed), is_active=True)
            .order_by("-pk")}
        for key, (role, email, name) in sorted(listed.items()):
            membership = existing.get(key)
            if membership is None:
                user = users.get(key)
                Membership.objects.create(
                    course=course, email=email, name=name, role=role, user=user,
                    status=Membership.Status.ACTIVE if user else Membership.Status.INVITED)
                report["created"].append(email)
            elif membership.status == Membership.Status.REVOKED:
                report["revoked_kept"].append(membership.email)
            elif ROLE_RANK[role] > ROLE_RANK[membership.role] or (name and not membership.name):
                membership.role = max(role, membership.role, key=ROLE_RANK.__getitem__)
                membership.name = membership.name or name
                membership.save(update_fields=["role", "name"])
                report["updated"].append(membership.email)
            else:
                report["unchanged"] += 1
        report["missing_from_lms"] = sorted(
            m.email for key, m in existing.items()
            if key not in listed and m.status != Membership.Status.REVOKED)
        LtiContext.objects.filter(pk=context.pk).update(
            last_synced_at=timezone.now(), last_sync_report=report, last_sync_error="")
    log.info("LTI roster sync of %s: %d created, %d updated, %d missing from the LMS",
             context, len(report["created"]), len(report["updated"]),
             len(report["missing_from_lms"]))
    return report


def lti_roster_sync_fail(*, context_id: int, reason: str) -> None:
    """Record why a sync gave up, for the staff page and the admin."""
    LtiContext.objects.filter(pk=context_id).update(last_sync_error=reason[:2000])


def lti_roster_sync_request(*, course: Course) -> list[LtiContext]:
    """Queue a roster sync for each LMS course linked to `course` (after commit)."""
    from courses.tasks import lti_roster_sync_task

    contexts = list(LtiContext.objects.filter(course=course).exclude(memberships_url=""))
    for context in contexts:
        transaction.on_commit(lambda pk=context.pk: lti_roster_sync_task.delay(pk))
    return contexts
