"""LTI 1.3 against a fake LMS served over real HTTP from a thread in the test:
its JWKS, its token endpoint (which checks the tool's signed assertion) and
its Names and Role Provisioning Services member list, two pages long."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.urls import reverse
from jwt.algorithms import RSAAlgorithm

from courses import lti
from courses.models import LtiContext, LtiLoginState, LtiPlatform, Membership
from courses.tasks import lti_roster_sync_task
from tests.factories import CourseFactory, MembershipFactory, UserFactory

ISSUER = "https://canvas.test.example.edu"
CLIENT_ID = "10000000000042"
DEPLOYMENT = "7:8865aa05b4b79b64a91a86042e43af5ea8ae79eb"
CONTEXT_ID = "4dde05e8ca1973bcca9bffc13e1548820eee93a3"
ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership"
INSTRUCTOR = f"{ROLE}#Instructor"
TA = f"{ROLE}#TeachingAssistant"
TA_SUBROLE = f"{ROLE}/Instructor#TeachingAssistant"
LEARNER = f"{ROLE}#Learner"
INSTITUTION_STUDENT = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Student"


def _rsa_key(kid: str):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return private, jwk


class FakeLms:
    """What the LMS serves; tests set `members_pages` and `tool_jwks`."""

    def __init__(self, base: str):
        self.base = base
        self.key, self.jwk = _rsa_key("lms-key-1")
        self.tool_jwks: list[dict] = []
        self.members_pages: list[list[dict]] = [[]]
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.member_requests: list[str] = []

    @property
    def memberships_url(self) -> str:
        return f"{self.base}/api/lti/courses/42/names_and_roles?page=1"

    def token_response(self, form: dict[str, str]) -> tuple[int, dict]:
        self.token_requests += 1
        if (form.get("grant_type") != "client_credentials" or form.get("client_assertion_type")
                != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"):
            return 400, {"error": "unsupported_grant_type"}
        assertion = form.get("client_assertion", "")
        try:
            kid = jwt.get_unverified_header(assertion)["kid"]
            key = next(jwt.PyJWK(k).key for k in self.tool_jwks if k["kid"] == kid)
            claims = jwt.decode(assertion, key, algorithms=["RS256"],
                                audience=f"{self.base}/login/oauth2/token", issuer=CLIENT_ID,
                                options={"require": ["exp", "iat", "jti", "sub"]})
        except (jwt.InvalidTokenError, StopIteration, KeyError):
            return 401, {"error": "invalid_client"}
        if claims["sub"] != CLIENT_ID or lti.NRPS_SCOPE not in form.get("scope", "").split():
            return 401, {"error": "invalid_scope"}
        token = uuid.uuid4().hex
        self.tokens.add(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                     "scope": lti.NRPS_SCOPE}

    def members_response(self, path: str, headers) -> tuple[int, dict, dict]:
        self.member_requests.append(path)
        bearer = headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer not in self.tokens:
            return 401, {"error": "unauthorized"}, {}
        if headers.get("Accept") != lti.NRPS_MEDIA_TYPE:
            return 406, {"error": "not acceptable"}, {}
        page = int(parse_qs(urlparse(path).query)["page"][0])
        extra = {}
        if page < len(self.members_pages):
            extra["Link"] = (f'<{self.base}/api/lti/courses/42/names_and_roles?page={page + 1}>;'
                             ' rel="next"')
        return 200, {"id": self.memberships_url, "context": {"id": CONTEXT_ID},
                     "members": self.members_pages[page - 1]}, extra


def _handler(lms: FakeLms):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: dict, headers: dict | None = None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/api/lti/security/jwks":
                self._send(200, {"keys": [lms.jwk]})
            elif self.path.startswith("/api/lti/courses/42/names_and_roles"):
                self._send(*lms.members_response(self.path, self.headers))
            else:
                self._send(404, {})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            form = {k: v[0] for k, v in parse_qs(body).items()}
            if self.path == "/login/oauth2/token":
                self._send(*lms.token_response(form))
            else:
                self._send(404, {})

    return Handler


@pytest.fixture(scope="module")
def lms():
    server = ThreadingHTTPServer(("127.0.0.1", 0), None)
    fake = FakeLms(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def platform(db, lms):
    lms.tool_jwks = lti.lti_tool_jwks()["keys"]
    lms.members_pages = [[]]
    lms.member_requests = []
    return LtiPlatform.objects.create(
        name="University Canvas", issuer=ISSUER, client_id=CLIENT_ID,
        auth_login_url=f"{lms.base}/api/lti/authorize_redirect",
        auth_token_url=f"{lms.base}/login/oauth2/token",
        jwks_url=f"{lms.base}/api/lti/security/jwks", deployment_ids=[DEPLOYMENT])


@pytest.fixture
def linked(platform, lms):
    """CS 229 linked to the Canvas course, with its instructor already in Lens."""
    course = CourseFactory(code="CS229", title="Machine Learning")
    teacher = MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                                user__username="ada", user__email="ada@uni.example.edu")
    context = LtiContext.objects.create(platform=platform, context_id=CONTEXT_ID,
                                        deployment_id=DEPLOYMENT, course=course,
                                        memberships_url=lms.memberships_url)
    return context, teacher


def id_token(lms: FakeLms, *, nonce: str, roles: list[str], email: str = "sam@uni.example.edu",
             key=None, kid: str = "lms-key-1", **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": CLIENT_ID, "sub": "canvas-user-" + email.split("@")[0],
        "iat": now, "exp": now + 300, "nonce": nonce, "email": email,
        "name": "Sam Rivera", "given_name": "Sam", "family_name": "Rivera",
        lti.CLAIM_MESSAGE_TYPE: "LtiResourceLinkRequest",
        lti.CLAIM_VERSION: "1.3.0",
        lti.CLAIM_DEPLOYMENT_ID: DEPLOYMENT,
        lti.CLAIM + "target_link_uri": lti.lti_tool_urls()["launch"],
        lti.CLAIM_RESOURCE_LINK: {"id": "resource-link-1", "title": "Lens"},
        lti.CLAIM_CONTEXT: {"id": CONTEXT_ID, "label": "CS229", "title": "Machine Learning"},
        lti.CLAIM_ROLES: roles,
        lti.CLAIM_NRPS: {"context_memberships_url": lms.memberships_url,
                         "service_versions": ["2.0"]},
    }
    claims.update(overrides)
    return jwt.encode(claims, key or lms.key, algorithm="RS256", headers={"kid": kid})


def login_initiation(client, **params) -> dict[str, str]:
    query = {"iss": ISSUER, "login_hint": "opaque-hint", "client_id": CLIENT_ID,
             "target_link_uri": lti.lti_tool_urls()["launch"],
             "lti_message_hint": "opaque-message", "lti_deployment_id": DEPLOYMENT, **params}
    response = client.post(reverse("lti-login"), query)
    assert response.status_code == 302, response.content
    return {k: v[0] for k, v in parse_qs(urlparse(response["Location"]).query).items()}


def launch(client, lms, *, roles, **token_args):
    auth = login_initiation(client)
    token = id_token(lms, nonce=auth["nonce"], roles=roles, **token_args)
    return client.post(reverse("lti-launch"), {"id_token": token, "state": auth["state"]})


def signed_in_as(client):
    return client.session.get("_auth_user_id")


# --- the tool's keys and registration ------------------------------------------------------


def test_the_jwks_publishes_the_tools_public_key_and_nothing_private(client, db):
    keys = client.get(reverse("lti-jwks")).json()["keys"]

    assert len(keys) == 1
    assert {"kty", "n", "e", "kid"} <= set(keys[0]) and keys[0]["alg"] == "RS256"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(keys[0])
    assert client.get(reverse("lti-jwks")).json()["keys"] == keys  # the same key, kept


def test_the_canvas_configuration_points_canvas_at_lens(client, db):
    config = client.get(reverse("lti-canvas-config")).json()

    urls = lti.lti_tool_urls()
    assert config["oidc_initiation_url"] == urls["login"]
    assert config["target_link_uri"] == urls["launch"]
    assert config["public_jwk_url"] == urls["jwks"]
    assert lti.NRPS_SCOPE in config["scopes"]


def test_login_sends_the_browser_to_the_lms_with_a_fresh_state_and_nonce(client, platform, lms):
    first, second = login_initiation(client), login_initiation(client)

    assert first["client_id"] == CLIENT_ID and first["login_hint"] == "opaque-hint"
    assert first["lti_message_hint"] == "opaque-message"
    assert first["redirect_uri"] == lti.lti_tool_urls()["launch"]
    assert first["response_mode"] == "form_post" and first["scope"] == "openid"
    assert first["state"] != second["state"] and first["nonce"] != second["nonce"]
    response = client.get(reverse("lti-login"), {"iss": ISSUER, "login_hint": "x",
                                                 "target_link_uri": lti.lti_tool_urls()["launch"]})
    assert response["Location"].startswith(f"{lms.base}/api/lti/authorize_redirect?")


@pytest.mark.parametrize("params, message", [
    ({"iss": "https://other-lms.example.com"}, "is not registered with Lens"),
    ({"client_id": "999"}, "is not registered with Lens"),
    ({"lti_deployment_id": "1:other"}, "Deployment 1:other"),
    ({"target_link_uri": "https://evil.example.com/launch"}, "which is not this Lens"),
    ({"login_hint": ""}, "lacks login_hint"),
])
def test_login_from_an_unknown_lms_or_deployment_is_refused(client, platform, params, message):
    query = {"iss": ISSUER, "login_hint": "h", "client_id": CLIENT_ID,
             "target_link_uri": lti.lti_tool_urls()["launch"], **params}

    response = client.post(reverse("lti-login"), query)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not LtiLoginState.objects.exists()


# --- launch ------------------------------------------------------------------------------


@pytest.mark.parametrize("roles, lens_role", [
    ([INSTRUCTOR, INSTITUTION_STUDENT], Membership.Role.INSTRUCTOR),
    ([TA], Membership.Role.TA),
    ([TA_SUBROLE, INSTRUCTOR], Membership.Role.TA),
    ([LEARNER, INSTITUTION_STUDENT], Membership.Role.STUDENT),
])
def test_a_launch_signs_the_person_in_and_joins_them_with_their_lms_role(
        client, linked, lms, roles, lens_role):
    context, _ = linked

    response = launch(client, lms, roles=roles, email="Sam@Uni.Example.edu")

    assert response.status_code == 302 and response["Location"] == reverse("home")
    user = get_user_model().objects.get(email__iexact="sam@uni.example.edu")
    assert signed_in_as(client) == str(user.pk)
    assert (user.first_name, user.last_name) == ("Sam", "Rivera")
    assert not user.has_usable_password()
    membership = Membership.objects.get(course=context.course, user=user)
    assert (membership.role, membership.status) == (lens_role, Membership.Status.ACTIVE)
    assert membership.name == "Sam Rivera"
    home = client.get(reverse("home")).content.decode()
    assert "Machine Learning" in home and f"you are {membership.get_role_display()}" in home


def test_a_launch_uses_the_existing_account_and_invitation_for_that_email(client, linked, lms):
    context, _ = linked
    user = UserFactory(username="emily", email="emily.chen@uni.example.edu")
    invited = MembershipFactory(course=context.course, user=None,
                                email="Emily.Chen@uni.example.edu",
                                status=Membership.Status.INVITED)

    launch(client, lms, roles=[LEARNER], email="emily.chen@uni.example.edu")

    invited.refresh_from_db()
    assert signed_in_as(client) == str(user.pk)
    assert (invited.user, invited.status) == (user, Membership.Status.ACTIVE)
    assert Membership.objects.filter(course=context.course).count() == 2  # teacher + Emily


def test_a_launch_never_lowers_a_role_lens_gave(client, linked, lms):
    context, teacher = linked

    launch(client, lms, roles=[LEARNER], email=teacher.email)

    teacher.refresh_from_db()
    assert teacher.role == Membership.Role.INSTRUCTOR


def test_a_person_revoked_in_lens_is_not_let_back_in_by_a_launch(client, linked, lms):
    context, _ = linked
    gone = MembershipFactory(course=context.course, user__username="gone",
                             status=Membership.Status.REVOKED)

    response = launch(client, lms, roles=[LEARNER], email=gone.email)

    assert response.status_code == 403
    assert "was revoked" in response.content.decode()
    gone.refresh_from_db()
    assert gone.status == Membership.Status.REVOKED and signed_in_as(client) is None


def test_a_lens_administrator_account_cannot_be_signed_in_from_an_lms(client, linked, lms):
    UserFactory(username="root", email="root@uni.example.edu", is_staff=True, is_superuser=True)

    response = launch(client, lms, roles=[INSTRUCTOR], email="root@uni.example.edu")

    assert response.status_code == 403 and signed_in_as(client) is None


@pytest.mark.parametrize("token_args, message", [
    ({"aud": "some-other-tool"}, "meant for another tool"),
    ({"exp": int(time.time()) - 120, "iat": int(time.time()) - 420}, "has expired"),
    ({"iss": "https://other-lms.example.com"}, "different LMS"),
    ({lti.CLAIM_DEPLOYMENT_ID: "1:not-registered"}, "Deployment 1:not-registered"),
    ({lti.CLAIM_MESSAGE_TYPE: "LtiDeepLinkingRequest"}, "resource link launches only"),
    ({lti.CLAIM_VERSION: "1.1"}, "LTI 1.3.0"),
    ({"roles": [f"{ROLE}#Mentor"]}, "none of them"),
    ({"email": ""}, "did not share your email"),
])
def test_a_launch_with_a_bad_token_is_refused(client, linked, lms, token_args, message):
    roles = token_args.pop("roles", [LEARNER])

    response = launch(client, lms, roles=roles, **token_args)

    assert response.status_code in (400, 403)
    assert message in response.content.decode()
    assert signed_in_as(client) is None
    assert not get_user_model().objects.filter(email="sam@uni.example.edu").exists()


def test_a_launch_whose_signature_was_tampered_with_is_refused(client, linked, lms):
    auth = login_initiation(client)
    header, payload, signature = id_token(lms, nonce=auth["nonce"], roles=[LEARNER]).split(".")
    forged = jwt.utils.base64url_decode(payload.encode())
    forged = forged.replace(LEARNER.encode(), INSTRUCTOR.encode())
    forged_payload = jwt.utils.base64url_encode(forged).decode()

    response = client.post(reverse("lti-launch"), {
        "id_token": f"{header}.{forged_payload}.{signature}", "state": auth["state"]})

    assert response.status_code == 400
    assert "signature does not verify" in response.content.decode()
    assert signed_in_as(client) is None


def test_a_launch_signed_by_a_key_the_lms_does_not_publish_is_refused(client, linked, lms):
    stranger, _ = _rsa_key("lms-key-1")  # same kid, different key

    response = launch(client, lms, roles=[INSTRUCTOR], key=stranger)

    assert response.status_code == 400 and signed_in_as(client) is None
    other_kid = launch(client, lms, roles=[INSTRUCTOR], key=stranger, kid="rogue")
    assert other_kid.status_code == 400
    assert "not signed with a key" in other_kid.content.decode()


def test_a_launch_cannot_be_replayed(client, linked, lms):
    auth = login_initiation(client)
    token = id_token(lms, nonce=auth["nonce"], roles=[LEARNER])
    assert client.post(reverse("lti-launch"), {"id_token": token,
                                               "state": auth["state"]}).status_code == 302
    client.logout()

    again = client.post(reverse("lti-launch"), {"id_token": token, "state": auth["state"]})
    assert again.status_code == 400 and "already used" in again.content.decode()

    # The same token under a new login's state: its nonce belongs to the old login.
    fresh = login_initiation(client)
    replay = client.post(reverse("lti-launch"), {"id_token": token, "state": fresh["state"]})
    assert replay.status_code == 400 and "nonce does not match" in replay.content.decode()
    assert signed_in_as(client) is None


def test_a_launch_after_the_login_went_stale_is_refused(client, linked, lms):
    auth = login_initiation(client)
    LtiLoginState.objects.update(created_at=LtiLoginState.objects.get().created_at
                                 - lti.STATE_TTL)

    response = client.post(reverse("lti-launch"), {
        "id_token": id_token(lms, nonce=auth["nonce"], roles=[LEARNER]), "state": auth["state"]})

    assert response.status_code == 400 and "expired" in response.content.decode()


def test_the_lms_reporting_an_error_is_shown_plainly(client, platform):
    response = client.post(reverse("lti-launch"), {"error": "login_required",
                                                   "error_description": "Please log in."})

    assert response.status_code == 400 and "Please log in." in response.content.decode()


# --- unlinked LMS courses ------------------------------------------------------------------


def test_a_student_from_an_unlinked_lms_course_is_told_to_ask_the_instructor(
        client, platform, lms):
    response = launch(client, lms, roles=[LEARNER])

    context = LtiContext.objects.get(context_id=CONTEXT_ID)
    assert context.course is None and context.title == "Machine Learning"
    assert response["Location"] == reverse("lti-context", args=[context.pk])
    page = client.get(response["Location"])
    assert 'data-testid="ask-instructor"' in page.content.decode()
    assert not Membership.objects.exists()
    denied = client.post(response["Location"], {"course": CourseFactory().pk})
    assert denied.status_code == 403
    context.refresh_from_db()
    assert context.course is None


def test_an_instructor_links_an_unlinked_lms_course_to_a_course_they_teach(
        client, platform, lms):
    mine = CourseFactory(code="CS229")
    MembershipFactory(course=mine, role=Membership.Role.INSTRUCTOR,
                      user__username="ada", user__email="ada@uni.example.edu")
    only_student = CourseFactory(code="MATH51")
    MembershipFactory(course=only_student, user__username="ada", role=Membership.Role.STUDENT)

    response = launch(client, lms, roles=[INSTRUCTOR], email="ada@uni.example.edu")
    page = client.get(response["Location"]).content.decode()
    assert "CS229" in page and "MATH51" not in page

    refused = client.post(response["Location"], {"course": only_student.pk})
    assert refused.status_code == 400 and "Choose a course you teach" in refused.content.decode()
    linked = client.post(response["Location"], {"course": mine.pk})

    assert linked.status_code == 302
    assert LtiContext.objects.get(context_id=CONTEXT_ID).course == mine
    # A student who launches next joins the course straight away.
    client.logout()
    launch(client, lms, roles=[LEARNER], email="sam@uni.example.edu")
    assert Membership.objects.get(course=mine, email="sam@uni.example.edu").role == "student"


def test_someone_who_did_not_launch_the_lms_course_cannot_see_or_link_it(client, platform, lms):
    launch(client, lms, roles=[INSTRUCTOR])
    context = LtiContext.objects.get()
    client.logout()
    outsider = UserFactory(username="mallory")
    MembershipFactory(user=outsider, role=Membership.Role.INSTRUCTOR)
    client.force_login(outsider)

    assert client.get(reverse("lti-context", args=[context.pk])).status_code == 404
    assert client.post(reverse("lti-context", args=[context.pk]), {}).status_code == 404


# --- roster sync over NRPS -----------------------------------------------------------------


def _member(email, roles, name=None, status="Active"):
    member = {"user_id": "u-" + (email or name), "roles": roles, "status": status,
              "name": name or email.split("@")[0].title()}
    if email:
        member["email"] = email
    return member


@pytest.fixture
def canvas_roster(lms):
    lms.members_pages = [
        [_member("ada@uni.example.edu", [INSTRUCTOR]),
         _member("ben@uni.example.edu", [TA_SUBROLE]),
         _member("old.ta@uni.example.edu", [LEARNER]),
         _member("emily.chen@uni.example.edu", [LEARNER])],
        [_member("Noah.Kim@uni.example.edu", [LEARNER]),
         _member("gone@uni.example.edu", [LEARNER]),
         _member("left@uni.example.edu", [LEARNER], status="Inactive"),
         _member(None, [LEARNER], name="Private Person"),
         _member("designer@uni.example.edu", [f"{ROLE}#ContentDeveloper"])],
    ]


def _roster(course):
    return sorted((m.email.lower(), m.role, m.status, m.user_id, m.name)
                  for m in Membership.objects.filter(course=course))


def test_roster_sync_reads_every_page_and_adds_people_with_their_roles(
        linked, lms, canvas_roster):
    context, teacher = linked
    course = context.course
    old_ta = MembershipFactory(course=course, role=Membership.Role.TA, user__username="old.ta",
                               name="Old TA")
    MembershipFactory(course=course, user__username="gone", status=Membership.Status.REVOKED)
    only_in_lens = MembershipFactory(course=course, user__username="walkin")
    emily = UserFactory(username="emily.chen")

    report = lti.lti_roster_sync(context_id=context.pk)

    assert len(lms.member_requests) == 2 and lms.member_requests[-1].endswith("page=2")
    roster = {m.email.lower(): m for m in Membership.objects.filter(course=course)}
    assert roster["ben@uni.example.edu"].role == Membership.Role.TA
    assert roster["ben@uni.example.edu"].status == Membership.Status.INVITED
    assert roster["emily.chen@uni.example.edu"].user == emily
    assert roster["emily.chen@uni.example.edu"].status == Membership.Status.ACTIVE
    assert roster["noah.kim@uni.example.edu"].role == Membership.Role.STUDENT
    assert roster["noah.kim@uni.example.edu"].status == Membership.Status.INVITED
    assert roster[old_ta.email].role == Membership.Role.TA  # listed as learner: not lowered
    assert old_ta.email not in report["updated"]
    assert roster[teacher.email].role == Membership.Role.INSTRUCTOR
    assert roster["gone@uni.example.edu"].status == Membership.Status.REVOKED
    assert {"left@uni.example.edu", "designer@uni.example.edu"}.isdisjoint(roster)
    assert sorted(report["created"]) == ["Noah.Kim@uni.example.edu", "ben@uni.example.edu",
                                         "emily.chen@uni.example.edu"]
    assert report["revoked_kept"] == ["gone@uni.example.edu"]
    assert report["missing_from_lms"] == [only_in_lens.email]  # reported, still there
    assert Membership.objects.get(pk=only_in_lens.pk).status == Membership.Status.ACTIVE
    assert {s["member"] for s in report["skipped"]} == {
        "left@uni.example.edu", "Private Person", "designer@uni.example.edu"}
    context.refresh_from_db()
    assert context.last_synced_at is not None and context.last_sync_report == report


def test_roster_sync_twice_changes_nothing_the_second_time(linked, lms, canvas_roster):
    context, _ = linked
    lti_roster_sync_task.delay(context.pk)
    before = _roster(context.course)

    lti_roster_sync_task.delay(context.pk)

    assert _roster(context.course) == before
    report = LtiContext.objects.get(pk=context.pk).last_sync_report
    assert report["created"] == [] and report["updated"] == []
    assert report["unchanged"] == 6


def test_roster_sync_raises_a_role_the_lms_raised(linked, lms, canvas_roster):
    context, _ = linked
    ben = MembershipFactory(course=context.course, user__username="ben", name="Ben")

    report = lti.lti_roster_sync(context_id=context.pk)

    ben.refresh_from_db()
    assert ben.role == Membership.Role.TA and ben.email in report["updated"]


def test_roster_sync_signs_its_token_request_with_the_published_tool_key(
        linked, lms, canvas_roster):
    context, _ = linked
    lms.tool_jwks = [_rsa_key(k["kid"])[1] for k in lms.tool_jwks]  # the LMS knows other keys

    lti_roster_sync_task.delay(context.pk)

    context.refresh_from_db()
    assert "refused (401)" in context.last_sync_error
    assert "invalid_client" in context.last_sync_error
    assert list(Membership.objects.filter(course=context.course)) == [linked[1]]


def test_roster_sync_of_an_unlinked_lms_course_records_why_it_did_nothing(platform):
    context = LtiContext.objects.create(platform=platform, context_id="c2",
                                        deployment_id=DEPLOYMENT)

    lti_roster_sync_task.delay(context.pk)

    context.refresh_from_db()
    assert "not linked" in context.last_sync_error and context.last_synced_at is None


def test_roster_sync_retries_when_the_lms_is_down(linked, lms, monkeypatch):
    context, _ = linked
    LtiPlatform.objects.update(auth_token_url="http://127.0.0.1:9/token")  # nothing listens
    retries = []
    monkeypatch.setattr(lti_roster_sync_task, "retry",
                        lambda exc, countdown: retries.append(countdown) or RuntimeError("retry"))

    with pytest.raises(RuntimeError, match="retry"):
        lti_roster_sync_task.apply(args=[context.pk], throw=True)

    assert retries == [5]


# --- the staff page and the admin ----------------------------------------------------------


@pytest.mark.parametrize("role, status", [
    (Membership.Role.INSTRUCTOR, 200), (Membership.Role.HEAD_TA, 200),
    (Membership.Role.TA, 403), (Membership.Role.STUDENT, 403)])
def test_the_lms_roster_page_is_for_instructors_and_head_tas(client, linked, role, status):
    context, _ = linked
    member = MembershipFactory(course=context.course, role=role)
    client.force_login(member.user)

    assert client.get(reverse("lti-course", args=[context.course_id])).status_code == status
    sync = client.post(reverse("lti-course-sync", args=[context.course_id]))
    assert sync.status_code == (302 if status == 200 else 403)


def test_the_lms_roster_page_is_not_found_for_outsiders_and_other_courses(client, linked):
    context, _ = linked
    elsewhere = MembershipFactory(role=Membership.Role.INSTRUCTOR)
    client.force_login(elsewhere.user)

    assert client.get(reverse("lti-course", args=[context.course_id])).status_code == 404
    assert client.post(reverse("lti-course-sync", args=[context.course_id])).status_code == 404
    client.force_login(UserFactory(username="nobody"))
    assert client.get(reverse("lti-course", args=[context.course_id])).status_code == 404


def test_the_sync_button_pulls_the_roster_and_the_page_shows_what_changed(
        client, linked, lms, canvas_roster, django_capture_on_commit_callbacks):
    context, teacher = linked
    client.force_login(teacher.user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("lti-course-sync", args=[context.course_id]))

    assert response.status_code == 302
    assert Membership.objects.filter(course=context.course).count() == 6
    page = client.get(reverse("lti-course", args=[context.course_id])).content.decode()
    assert "Noah.Kim@uni.example.edu" in page and "Private Person (no email shared)" in page


def test_a_ta_cannot_press_the_sync_button(client, linked, lms, canvas_roster,
                                           django_capture_on_commit_callbacks):
    context, _ = linked
    ta = MembershipFactory(course=context.course, role=Membership.Role.TA)
    client.force_login(ta.user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("lti-course-sync", args=[context.course_id]))

    assert response.status_code == 403 and lms.member_requests == []


def test_an_administrator_registers_a_platform_and_syncs_from_the_admin(
        client, linked, lms, canvas_roster, django_capture_on_commit_callbacks):
    context, _ = linked
    admin = UserFactory(username="admin", is_staff=True, is_superuser=True)
    client.force_login(admin)
    form = client.get(reverse("admin:courses_ltiplatform_add")).content.decode()
    assert lti.lti_tool_urls()["jwks"] in form

    created = client.post(reverse("admin:courses_ltiplatform_add"), {
        "name": "Other Canvas", "is_active": "on", "issuer": "https://canvas.instructure.com",
        "client_id": "170000000000001", "deployment_ids": "1:abc,2:def",
        "auth_login_url": "https://sso.canvaslms.com/api/lti/authorize_redirect",
        "auth_token_url": "https://sso.canvaslms.com/login/oauth2/token",
        "jwks_url": "https://sso.canvaslms.com/api/lti/security/jwks", "token_audience": ""})
    assert created.status_code == 302
    assert LtiPlatform.objects.get(client_id="170000000000001").deployment_ids == ["1:abc",
                                                                                    "2:def"]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:courses_lticontext_changelist"),
                    {"action": "sync_roster", "_selected_action": [context.pk]})
    assert Membership.objects.filter(course=context.course).count() == 6
