"""OpenID Connect sign-in against a fake university IdP running in the test.

The IdP is a small HTTP server on 127.0.0.1 with discovery, a JWKS holding an
RSA key made here, a token endpoint that checks the code, client secret and
PKCE verifier and returns an id_token signed with PyJWT, and userinfo. The
provider is configured the way an administrator does it: a SocialApp row.
"""

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from allauth.socialaccount.models import SocialAccount, SocialApp
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.urls import reverse

from courses.models import Membership
from courses.sso import affiliation_for_user
from tests.factories import CourseFactory, MembershipFactory

CLIENT_ID = "lens-at-state"
CLIENT_SECRET = "not-a-real-secret"
EMAIL = "sam.okafor@state.example.edu"


class FakeIdP:
    """What the test lets the IdP say; the handler reads it."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_key = self.key  # the test swaps in another key to forge
        self.kid = "state-2026"
        self.claims = {"sub": "u-1729", "email": EMAIL, "email_verified": True,
                       "name": "Sam Okafor", "given_name": "Sam", "family_name": "Okafor",
                       "eduperson_scoped_affiliation": ["faculty@state.example.edu"]}
        self.codes: dict[str, dict] = {}  # code -> {"challenge": ...}
        self.issuer = ""

    def authorize(self, authorize_url: str) -> dict:
        """The person signs in at the IdP; returns the callback's query (code, state)."""
        query = {k: v[0] for k, v in parse_qs(urlparse(authorize_url).query).items()}
        assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
        assert "openid" in query["scope"].split()
        code = f"code-{len(self.codes) + 1}"
        self.codes[code] = {"challenge": query.get("code_challenge"),
                            "redirect_uri": query["redirect_uri"]}
        return {"code": code, "state": query["state"]}

    def id_token(self) -> str:
        now = int(time.time())
        claims = {**self.claims, "iss": self.issuer, "aud": CLIENT_ID, "iat": now,
                  "exp": now + 300}
        return jwt.encode(claims, self.signing_key, algorithm="RS256",
                          headers={"kid": self.kid})

    def jwks(self) -> dict:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}


def _handler(idp: FakeIdP):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _json(self, body: dict, status: int = 200):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/.well-known/openid-configuration":
                return self._json({
                    "issuer": idp.issuer,
                    "authorization_endpoint": f"{idp.issuer}/authorize",
                    "token_endpoint": f"{idp.issuer}/token",
                    "userinfo_endpoint": f"{idp.issuer}/userinfo",
                    "jwks_uri": f"{idp.issuer}/jwks",
                    "token_endpoint_auth_methods_supported": ["client_secret_post"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                })
            if self.path == "/jwks":
                return self._json(idp.jwks())
            if self.path == "/userinfo":
                if self.headers.get("Authorization") != "Bearer access-for-u-1729":
                    return self._json({"error": "invalid_token"}, 401)
                return self._json(idp.claims)
            return self._json({"error": "not_found"}, 404)

        def do_POST(self):
            if self.path != "/token":
                return self._json({"error": "not_found"}, 404)
            length = int(self.headers.get("Content-Length", 0))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            issued = idp.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "").encode()
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
            if (issued is None or form.get("client_id") != CLIENT_ID
                    or form.get("client_secret") != CLIENT_SECRET
                    or form.get("redirect_uri") != issued["redirect_uri"]
                    or challenge.decode() != issued["challenge"]):
                return self._json({"error": "invalid_grant"}, 400)
            return self._json({"access_token": "access-for-u-1729", "token_type": "Bearer",
                               "expires_in": 300, "id_token": idp.id_token()})

    return Handler


@pytest.fixture
def fake_idp():
    idp = FakeIdP()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(idp))
    idp.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield idp
    server.shutdown()
    server.server_close()


@pytest.fixture
def oidc_app(fake_idp, db):
    """Configured in the admin: a SocialApp row, no settings change."""
    return SocialApp.objects.create(
        provider="openid_connect", provider_id="state", name="State University",
        client_id=CLIENT_ID, secret=CLIENT_SECRET,
        settings={"server_url": fake_idp.issuer, "oauth_pkce_enabled": True,
                  "verified_email": ["state.example.edu"]})


@pytest.fixture
def invited(db):
    course = CourseFactory(code="BIO210")
    return MembershipFactory(course=course, user=None, email=EMAIL, role=Membership.Role.TA,
                             status=Membership.Status.INVITED)


def sign_in(client, idp: FakeIdP):
    """Click "Sign in with State University", sign in at the IdP, come back."""
    response = client.post(reverse("openid_connect_login", args=["state"]))
    assert response.status_code == 302
    assert response["Location"].startswith(f"{idp.issuer}/authorize?")
    callback = idp.authorize(response["Location"])
    return client.get(reverse("openid_connect_callback", args=["state"]), callback, follow=True)


def signed_in_email(client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id).email if user_id else None


def test_the_sign_in_page_offers_the_university_from_the_admin(oidc_app, client):
    assert "Sign in with State University" in client.get(reverse("account_login")).content.decode()


def test_signing_in_at_the_university_joins_the_course_the_email_was_invited_to(
        fake_idp, oidc_app, invited, client):
    response = sign_in(client, fake_idp)

    assert response.status_code == 200
    assert signed_in_email(client) == EMAIL
    invited.refresh_from_db()
    assert invited.status == Membership.Status.ACTIVE and invited.user.email == EMAIL
    assert (invited.user.first_name, invited.user.last_name) == ("Sam", "Okafor")
    assert "BIO210" in response.content.decode()
    assert affiliation_for_user(user=invited.user) == ["faculty@state.example.edu"]
    assert SocialAccount.objects.get(user=invited.user).uid == "u-1729"


def test_an_id_token_signed_with_the_wrong_key_is_refused(fake_idp, oidc_app, invited, client,
                                                         caplog):
    fake_idp.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    response = sign_in(client, fake_idp)

    assert response.status_code == 401
    assert "Invalid id_token" in caplog.text
    assert signed_in_email(client) is None
    assert not get_user_model().objects.exists()
    invited.refresh_from_db()
    assert invited.status == Membership.Status.INVITED


def test_a_callback_with_a_state_lens_did_not_issue_is_refused(fake_idp, oidc_app, invited,
                                                               client):
    client.post(reverse("openid_connect_login", args=["state"]))
    forged = {"code": "code-1", "state": "made-up"}
    fake_idp.codes["code-1"] = {"challenge": None, "redirect_uri": ""}

    response = client.get(reverse("openid_connect_callback", args=["state"]), forged, follow=True)

    assert response.status_code == 401
    assert signed_in_email(client) is None


def test_a_university_without_affiliations_still_signs_the_person_in(fake_idp, oidc_app, invited,
                                                                    client):
    del fake_idp.claims["eduperson_scoped_affiliation"]

    assert sign_in(client, fake_idp).status_code == 200
    assert signed_in_email(client) == EMAIL
    assert affiliation_for_user(user=get_user_model().objects.get(email=EMAIL)) == []
