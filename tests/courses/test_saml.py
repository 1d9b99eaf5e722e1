"""SAML 2.0 sign-in, the real protocol: the test plays the university's IdP.

It makes a key pair and a self-signed certificate, answers Lens's AuthnRequest
with a Response whose Assertion it signs (XML-DSig through python3-saml /
xmlsec), and posts it to allauth's ACS the way a visitor would.
"""

import base64
import datetime as dt
import uuid
import zlib
from urllib.parse import parse_qs, urlparse

import pytest
from allauth.socialaccount.models import SocialAccount
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from courses.models import Membership
from courses.sso import affiliation_for_user
from lens.signin import sso_providers_from_env
from tests.factories import CourseFactory, MembershipFactory

HOST = "lens.example.edu"  # python3-saml refuses single-label hosts such as "testserver"
IDP = "https://idp.state.example.edu/idp/shibboleth"
SSO_URL = "https://idp.state.example.edu/idp/profile/SAML2/Redirect/SSO"
ACS = f"http://{HOST}/accounts/saml/state/acs/"
SP_ENTITY = f"http://{HOST}/accounts/saml/state/metadata/"
EMAIL = "maria.lopez@state.example.edu"


def key_and_certificate(common_name: str) -> tuple[str, str]:
    """A fresh RSA key and a self-signed certificate for it, both PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def idp_key():
    return key_and_certificate("idp.state.example.edu")


@pytest.fixture
def saml_idp(settings, monkeypatch, idp_key):
    """State University's IdP configured the way a deployment does it: SAML_* variables."""
    env = {
        "SAML_NAME": "State University",
        "SAML_SLUG": "state",
        "SAML_IDP_ENTITY_ID": IDP,
        "SAML_IDP_SSO_URL": SSO_URL,
        "SAML_IDP_X509CERT": idp_key[1],
        "SSO_VERIFIED_EMAIL_DOMAINS": "state.example.edu",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings.SOCIALACCOUNT_PROVIDERS = sso_providers_from_env()
    settings.ALLOWED_HOSTS = [HOST]
    return idp_key


@pytest.fixture
def visitor():
    return Client(HTTP_HOST=HOST)


@pytest.fixture
def invited(db):
    course = CourseFactory(code="CS229")
    return MembershipFactory(course=course, user=None, email="Maria.Lopez@state.example.edu",
                             status=Membership.Status.INVITED)


def _instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def start_sign_in(visitor) -> dict:
    """Click "Sign in with State University"; return what Lens sent to the IdP."""
    response = visitor.post(reverse("saml_login", args=["state"]))
    assert response.status_code == 302
    location = urlparse(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == SSO_URL
    query = parse_qs(location.query)
    request_xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15)
    authn_request = etree.fromstring(request_xml)
    return {"id": authn_request.get("ID"), "relay_state": query.get("RelayState", [""])[0],
            "acs": authn_request.get("AssertionConsumerServiceURL")}


def signed_response(key, *, in_response_to: str | None, email: str = EMAIL,
                    attributes: dict | None = None, issued: dt.datetime | None = None,
                    lifetime: dt.timedelta = dt.timedelta(minutes=5), sign: bool = True) -> str:
    """A SAML Response as the IdP would POST it, its Assertion signed with `key`."""
    key_pem, cert_pem = key
    issued = issued or dt.datetime.now(dt.UTC)
    expires = issued + lifetime
    in_response = f' InResponseTo="{in_response_to}"' if in_response_to else ""
    attributes = {
        "urn:oid:0.9.2342.19200300.100.1.3": [email],
        "urn:oid:2.16.840.1.113730.3.1.241": ["Maria Lopez"],
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.6": ["mlopez@state.example.edu"],
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.9": ["student@state.example.edu",
                                            "member@state.example.edu"],
    } if attributes is None else attributes
    attribute_xml = "".join(
        f'<saml:Attribute Name="{name}" '
        f'NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">'
        + "".join(f'<saml:AttributeValue xsi:type="xs:string">{v}</saml:AttributeValue>'
                  for v in values)
        + "</saml:Attribute>"
        for name, values in attributes.items())
    assertion = f"""<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"
      xmlns:xs="http://www.w3.org/2001/XMLSchema"
      xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
      ID="_{uuid.uuid4().hex}" Version="2.0" IssueInstant="{_instant(issued)}">
    <saml:Issuer>{IDP}</saml:Issuer>
    <saml:Subject>
      <saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient">_{uuid.uuid4().hex}</saml:NameID>
      <saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
        <saml:SubjectConfirmationData NotOnOrAfter="{_instant(expires)}" Recipient="{ACS}"{in_response}/>
      </saml:SubjectConfirmation>
    </saml:Subject>
    <saml:Conditions NotBefore="{_instant(issued - dt.timedelta(seconds=30))}" NotOnOrAfter="{_instant(expires)}">
      <saml:AudienceRestriction><saml:Audience>{SP_ENTITY}</saml:Audience></saml:AudienceRestriction>
    </saml:Conditions>
    <saml:AuthnStatement AuthnInstant="{_instant(issued)}" SessionIndex="_{uuid.uuid4().hex}">
      <saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>
    </saml:AuthnStatement>
    <saml:AttributeStatement>{attribute_xml}</saml:AttributeStatement>
  </saml:Assertion>"""  # noqa: E501
    if sign:
        assertion = OneLogin_Saml2_Utils.add_sign(assertion, key_pem, cert_pem).decode()
        assertion = assertion.removeprefix('<?xml version="1.0"?>').strip()
    return f"""<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"
      xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"
      ID="_{uuid.uuid4().hex}" Version="2.0" IssueInstant="{_instant(issued)}"
      Destination="{ACS}"{in_response}>
    <saml:Issuer>{IDP}</saml:Issuer>
    <samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
    {assertion}
  </samlp:Response>"""  # noqa: E501


def post_to_acs(visitor, response_xml: str, relay_state: str = ""):
    """The browser's auto-submitted form from the IdP to Lens's ACS, redirects followed."""
    return visitor.post(ACS, {"SAMLResponse": base64.b64encode(response_xml.encode()).decode(),
                              "RelayState": relay_state}, follow=True)


def signed_in_email(visitor) -> str | None:
    user_id = visitor.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id).email if user_id else None


def test_the_sign_in_page_offers_the_university_and_local_accounts(saml_idp, visitor, db):
    page = visitor.get(reverse("account_login")).content.decode()

    assert "Sign in with State University" in page
    assert 'name="password"' in page  # local accounts stay for development
    bookmarked = visitor.get(reverse("saml_login", args=["state"])).content.decode()
    assert "Sign in with State University" in bookmarked and "Continue" in bookmarked


def test_a_signed_assertion_signs_the_invited_person_in_and_joins_their_course(
        saml_idp, visitor, invited):
    request = start_sign_in(visitor)
    assert request["acs"] == ACS

    response = post_to_acs(visitor, signed_response(saml_idp, in_response_to=request["id"]),
                           request["relay_state"])

    assert response.status_code == 200
    assert signed_in_email(visitor) == EMAIL
    invited.refresh_from_db()
    assert invited.status == Membership.Status.ACTIVE
    assert invited.user.email == EMAIL
    assert (invited.user.first_name, invited.user.last_name) == ("Maria", "Lopez")
    assert "CS229" in response.content.decode()  # landed on their dashboard
    assert affiliation_for_user(user=invited.user) == ["student@state.example.edu",
                                                       "member@state.example.edu"]
    account = SocialAccount.objects.get(user=invited.user)
    assert (account.provider, account.uid) == (IDP, "mlopez@state.example.edu")
    linked = visitor.get(reverse("socialaccount_connections")).content.decode()
    assert "State University" in linked and "student@state.example.edu" in linked


def test_with_local_sign_up_closed_university_people_still_get_in(saml_idp, visitor, invited,
                                                                  settings):
    settings.ACCOUNT_ALLOW_SIGNUPS = False
    closed = visitor.post(reverse("account_signup"), {
        "email": "someone@state.example.edu", "password1": "a-long-pass-phrase-1",
        "password2": "a-long-pass-phrase-1"})
    assert not get_user_model().objects.exists()
    assert "closed" in closed.content.decode().lower()

    request = start_sign_in(visitor)
    post_to_acs(visitor, signed_response(saml_idp, in_response_to=request["id"]))

    assert signed_in_email(visitor) == EMAIL


def test_signing_in_again_uses_the_same_account(saml_idp, visitor, invited):
    for _ in range(2):
        request = start_sign_in(visitor)
        post_to_acs(visitor, signed_response(saml_idp, in_response_to=request["id"]))
        visitor.post(reverse("account_logout"))

    assert get_user_model().objects.filter(email__iexact=EMAIL).count() == 1
    assert SocialAccount.objects.count() == 1


def test_an_assertion_changed_after_signing_is_refused_and_nobody_is_signed_in(
        saml_idp, visitor, invited, caplog):
    victim = MembershipFactory(course=invited.course, user=None, status=Membership.Status.INVITED,
                               email="dean@state.example.edu")
    request = start_sign_in(visitor)
    tampered = signed_response(saml_idp, in_response_to=request["id"]).replace(
        EMAIL, "dean@state.example.edu")

    response = post_to_acs(visitor, tampered)

    assert response.status_code == 401
    assert "Sign-in failed" in response.content.decode()
    assert "Signature validation failed" in caplog.text
    assert signed_in_email(visitor) is None
    assert not get_user_model().objects.exists()
    victim.refresh_from_db()
    assert victim.status == Membership.Status.INVITED and victim.user is None


def test_an_expired_assertion_is_refused(saml_idp, visitor, invited, caplog):
    request = start_sign_in(visitor)
    stale = signed_response(saml_idp, in_response_to=request["id"],
                            issued=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
                            lifetime=dt.timedelta(minutes=5))

    response = post_to_acs(visitor, stale)

    assert response.status_code == 401
    assert "expired" in caplog.text
    assert signed_in_email(visitor) is None
    invited.refresh_from_db()
    assert invited.status == Membership.Status.INVITED


def test_an_assertion_signed_with_another_key_is_refused(saml_idp, visitor, invited, caplog):
    request = start_sign_in(visitor)
    forged = signed_response(key_and_certificate("idp.state.example.edu"),
                             in_response_to=request["id"])

    assert post_to_acs(visitor, forged).status_code == 401
    assert "Signature validation failed" in caplog.text
    assert signed_in_email(visitor) is None


def test_an_unsigned_response_is_refused(saml_idp, visitor, invited, caplog):
    request = start_sign_in(visitor)

    response = post_to_acs(visitor, signed_response(saml_idp, in_response_to=request["id"],
                                                    sign=False))

    assert response.status_code == 401
    assert "No Signature found" in caplog.text
    assert signed_in_email(visitor) is None


def test_a_response_lens_did_not_ask_for_is_refused(saml_idp, visitor, invited, caplog):
    """IdP-initiated sign-in is off unless SAML_ALLOW_IDP_INITIATED=true."""
    response = post_to_acs(visitor, signed_response(saml_idp, in_response_to=None))

    assert response.status_code == 401
    assert "IdP initiated SSO rejected" in caplog.text
    assert signed_in_email(visitor) is None


def test_an_idp_that_releases_no_affiliation_still_signs_the_person_in(saml_idp, visitor, invited):
    request = start_sign_in(visitor)
    response = post_to_acs(visitor, signed_response(
        saml_idp, in_response_to=request["id"],
        attributes={"urn:oid:0.9.2342.19200300.100.1.3": [EMAIL],
                    "urn:oid:1.3.6.1.4.1.5923.1.1.1.6": ["mlopez@state.example.edu"]}))

    assert response.status_code == 200
    assert signed_in_email(visitor) == EMAIL
    invited.refresh_from_db()
    assert affiliation_for_user(user=invited.user) == []
    linked = visitor.get(reverse("socialaccount_connections")).content.decode()
    assert "State University" in linked and "()" not in linked
