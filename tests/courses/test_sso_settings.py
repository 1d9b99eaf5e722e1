"""University sign-in read from the environment (lens/signin.py): strict, named errors."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from lens.signin import sso_providers_from_env

CERT = "MIIBfakecertificatebody"
METADATA = f"""<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.state.example.edu/idp">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{CERT}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
        Location="https://idp.state.example.edu/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"""  # noqa: E501

SSO_VARS = ["SAML_NAME", "SAML_SLUG", "SAML_IDP_METADATA_URL", "SAML_IDP_METADATA_XML",
            "SAML_IDP_SSO_URL", "SAML_IDP_ENTITY_ID", "SAML_IDP_X509CERT", "SAML_ATTR_EMAIL",
            "SAML_ALLOW_IDP_INITIATED", "OIDC_SERVER_URL", "OIDC_NAME", "OIDC_CLIENT_ID",
            "OIDC_CLIENT_SECRET", "OIDC_SLUG", "SSO_VERIFIED_EMAIL_DOMAINS"]


@pytest.fixture
def env(monkeypatch):
    for name in SSO_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)
    return set_env


def test_no_university_configured_means_local_accounts_only(env):
    assert sso_providers_from_env() == {}


def test_a_saml_idp_from_its_metadata_xml(env):
    env(SAML_NAME="State University", SAML_IDP_METADATA_XML=METADATA,
        SAML_ATTR_EMAIL="mail", SSO_VERIFIED_EMAIL_DOMAINS="State.example.edu")

    app = sso_providers_from_env()["saml"]["APPS"][0]

    assert app["name"] == "State University" and app["client_id"] == "university"
    assert app["settings"]["idp"] == {"entity_id": "https://idp.state.example.edu/idp",
                                      "sso_url": "https://idp.state.example.edu/sso",
                                      "x509cert": CERT}
    assert app["settings"]["attribute_mapping"]["email"] == ["mail"]
    assert "urn:oid:1.3.6.1.4.1.5923.1.1.1.9" in app["settings"]["attribute_mapping"]["affiliation"]
    assert app["settings"]["verified_email"] == ["state.example.edu"]
    assert app["settings"]["advanced"]["reject_idp_initiated_sso"] is True


def test_a_saml_idp_from_a_metadata_url_needs_its_entity_id(env):
    env(SAML_NAME="State University", SAML_IDP_METADATA_URL="https://idp.state.example.edu/md")

    with pytest.raises(ImproperlyConfigured, match="SAML_IDP_ENTITY_ID"):
        sso_providers_from_env()


def test_two_sources_for_the_same_idp_are_refused(env):
    env(SAML_NAME="State", SAML_IDP_METADATA_XML=METADATA,
        SAML_IDP_METADATA_URL="https://idp.state.example.edu/md")

    with pytest.raises(ImproperlyConfigured, match="Set only one of"):
        sso_providers_from_env()


@pytest.mark.parametrize(("values", "named"), [
    ({"SAML_IDP_METADATA_XML": METADATA}, "SAML_NAME"),
    ({"SAML_NAME": "S", "SAML_IDP_METADATA_XML": "<not-metadata/>"}, "SAML_IDP_METADATA_XML"),
    ({"SAML_NAME": "S", "SAML_IDP_SSO_URL": "https://idp/sso", "SAML_IDP_ENTITY_ID": "x"},
     "SAML_IDP_X509CERT"),
    ({"SAML_NAME": "S", "SAML_IDP_METADATA_XML": METADATA, "SAML_SLUG": "State U"}, "SAML_SLUG"),
    ({"SAML_NAME": "S", "SAML_IDP_METADATA_XML": METADATA, "SAML_ALLOW_IDP_INITIATED": "maybe"},
     "SAML_ALLOW_IDP_INITIATED"),
    ({"OIDC_SERVER_URL": "https://login.state.example.edu", "OIDC_NAME": "S"}, "OIDC_CLIENT_ID"),
    ({"OIDC_SERVER_URL": "login.state.example.edu", "OIDC_NAME": "S", "OIDC_CLIENT_ID": "c"},
     "OIDC_SERVER_URL"),
])
def test_a_half_configured_provider_stops_start_up_naming_the_variable(env, values, named):
    env(**values)

    with pytest.raises(ImproperlyConfigured, match=named):
        sso_providers_from_env()


def test_an_oidc_provider(env):
    env(OIDC_SERVER_URL="https://login.state.example.edu", OIDC_NAME="State University",
        OIDC_CLIENT_ID="lens", OIDC_CLIENT_SECRET="s", OIDC_SLUG="state")

    app = sso_providers_from_env()["openid_connect"]["APPS"][0]

    assert (app["provider_id"], app["client_id"], app["secret"]) == ("state", "lens", "s")
    assert app["settings"]["server_url"] == "https://login.state.example.edu"
    assert app["settings"]["scope"] == ["openid", "profile", "email"]
    assert app["settings"]["oauth_pkce_enabled"] is True
