"""University sign-in apps for django-allauth, read from the environment.

settings.py calls `sso_providers_from_env()` once at start-up. A deployment
names its university's identity provider with SAML_* or OIDC_* variables
(README "University sign-in"); further providers can be added as SocialApp
rows in the admin, with the same `settings` JSON these functions build. A
half-configured provider stops start-up with the variable's name rather than
showing a button that cannot work.
"""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured

from courses.sso import OIDC_AFFILIATION_CLAIM, SAML_ATTRIBUTES
from lens.env import env_bool, env_list, env_str

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def sso_providers_from_env() -> dict:
    """The SOCIALACCOUNT_PROVIDERS setting: whichever of SAML and OIDC is configured."""
    providers: dict = {}
    verified_domains = [d.lower() for d in env_list("SSO_VERIFIED_EMAIL_DOMAINS", [])]
    saml = saml_app_from_env(verified_domains=verified_domains)
    if saml:
        providers["saml"] = {"APPS": [saml]}
    oidc = oidc_app_from_env(verified_domains=verified_domains)
    if oidc:
        providers["openid_connect"] = {"APPS": [oidc]}
    return providers


def saml_app_from_env(*, verified_domains: list[str]) -> dict | None:
    """One SAML 2.0 IdP from SAML_*; None when no IdP is named."""
    sources = [name for name in ("SAML_IDP_METADATA_URL", "SAML_IDP_METADATA_XML",
                                 "SAML_IDP_SSO_URL") if env_str(name, "")]
    if not sources:
        return None
    if len(sources) > 1:
        raise ImproperlyConfigured(
            f"Set only one of {', '.join(sources)}: the IdP's metadata URL, its metadata "
            "XML, or its SSO URL with SAML_IDP_ENTITY_ID and SAML_IDP_X509CERT.")
    slug = _slug("SAML_SLUG", "university")
    idp: dict = {}
    if sources[0] == "SAML_IDP_METADATA_URL":
        idp = {"metadata_url": _url("SAML_IDP_METADATA_URL"),
               "entity_id": env_str("SAML_IDP_ENTITY_ID")}
    elif sources[0] == "SAML_IDP_METADATA_XML":
        idp = _idp_from_metadata_xml(env_str("SAML_IDP_METADATA_XML"),
                                     entity_id=env_str("SAML_IDP_ENTITY_ID", "") or None)
    else:
        idp = {"entity_id": env_str("SAML_IDP_ENTITY_ID"), "sso_url": _url("SAML_IDP_SSO_URL"),
               "x509cert": env_str("SAML_IDP_X509CERT")}
        if env_str("SAML_IDP_SLO_URL", ""):
            idp["slo_url"] = _url("SAML_IDP_SLO_URL")

    mapping = {key: env_list(f"SAML_ATTR_{key.upper()}", default)
               for key, default in SAML_ATTRIBUTES.items()}
    app_settings: dict = {
        "idp": idp,
        "attribute_mapping": mapping,
        "use_nameid_for_email": env_bool("SAML_NAMEID_IS_EMAIL", False),
        "verified_email": verified_domains,
        "advanced": {
            # python3-saml always refuses a Response with no signature; this
            # also demands a signature on the Assertion itself.
            "want_assertion_signed": env_bool("SAML_WANT_ASSERTION_SIGNED", False),
            "reject_idp_initiated_sso": not env_bool("SAML_ALLOW_IDP_INITIATED", False),
        },
    }
    if env_str("SAML_SP_ENTITY_ID", ""):
        app_settings["sp"] = {"entity_id": env_str("SAML_SP_ENTITY_ID")}
    return {
        "name": env_str("SAML_NAME"),
        # Accounts are keyed by the IdP's entity id, as allauth's docs do.
        "provider_id": idp["entity_id"],
        "client_id": slug,
        "settings": app_settings,
    }


def oidc_app_from_env(*, verified_domains: list[str]) -> dict | None:
    """One OpenID Connect provider from OIDC_*; None when OIDC_SERVER_URL is unset."""
    if not env_str("OIDC_SERVER_URL", ""):
        return None
    return {
        "name": env_str("OIDC_NAME"),
        "provider_id": _slug("OIDC_SLUG", "university"),
        "client_id": env_str("OIDC_CLIENT_ID"),
        "secret": env_str("OIDC_CLIENT_SECRET", ""),
        "settings": {
            "server_url": _url("OIDC_SERVER_URL"),
            "scope": env_list("OIDC_SCOPES", ["openid", "profile", "email"]),
            "oauth_pkce_enabled": env_bool("OIDC_PKCE", True),
            "affiliation_claim": env_str("OIDC_AFFILIATION_CLAIM", OIDC_AFFILIATION_CLAIM),
            "verified_email": verified_domains,
        },
    }


def _slug(name: str, default: str) -> str:
    value = env_str(name, default)
    if not _SLUG.match(value):
        raise ImproperlyConfigured(
            f"{name}={value!r} must be lowercase letters, digits and dashes (it is part of URLs).")
    return value


def _url(name: str) -> str:
    value = env_str(name)
    if not value.startswith(("https://", "http://")):
        raise ImproperlyConfigured(f"{name}={value!r} is not an http(s) URL.")
    return value


def _idp_from_metadata_xml(xml: str, *, entity_id: str | None) -> dict:
    """entity id, SSO URL and signing certificate out of the IdP's metadata document."""
    from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

    try:
        parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml, entity_id=entity_id).get("idp", {})
    except Exception as exc:  # lxml and python3-saml raise several kinds
        raise ImproperlyConfigured(f"SAML_IDP_METADATA_XML is not IdP metadata: {exc}") from None
    certs = parsed.get("x509certMulti", {}).get("signing") or [parsed.get("x509cert")]
    sso_url = parsed.get("singleSignOnService", {}).get("url")
    if not (parsed.get("entityId") and sso_url and certs[0]):
        raise ImproperlyConfigured(
            "SAML_IDP_METADATA_XML has no IDPSSODescriptor with an HTTP-Redirect "
            "SingleSignOnService and a signing certificate.")
    idp = {"entity_id": parsed["entityId"], "sso_url": sso_url, "x509cert": certs[0]}
    if parsed.get("singleLogoutService", {}).get("url"):
        idp["slo_url"] = parsed["singleLogoutService"]["url"]
    return idp
