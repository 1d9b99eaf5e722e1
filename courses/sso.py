"""University sign-in: what the identity provider says about a person.

Imported by lens/settings.py (through lens/signin.py) for the defaults, so it
must not import models at module level.
"""

from __future__ import annotations

# eduPerson / inetOrgPerson OIDs first (what Shibboleth and most university
# IdPs release), then the friendly names and the claim URIs ADFS and Entra ID use.
SAML_ATTRIBUTES = {
    "uid": [
        "urn:oasis:names:tc:SAML:attribute:subject-id",
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.6",  # eduPersonPrincipalName
        "eduPersonPrincipalName",
    ],
    "email": [
        "urn:oid:0.9.2342.19200300.100.1.3",  # mail
        "mail",
        "email",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    ],
    "name": [
        "urn:oid:2.16.840.1.113730.3.1.241",  # displayName
        "displayName",
        "http://schemas.microsoft.com/identity/claims/displayname",
    ],
    "first_name": [
        "urn:oid:2.5.4.42",  # givenName
        "givenName",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    ],
    "last_name": [
        "urn:oid:2.5.4.4",  # sn
        "sn",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    ],
    "affiliation": [
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.9",  # eduPersonScopedAffiliation
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.1",  # eduPersonAffiliation
        "eduPersonScopedAffiliation",
        "eduPersonAffiliation",
    ],
}
OIDC_AFFILIATION_CLAIM = "eduperson_scoped_affiliation"


def affiliation_extract(*, provider, extra_data: dict) -> list[str]:
    """The person's affiliations (e.g. ["student@state.edu"]) from a SAML or OIDC sign-in.

    SAML: the first attribute named in the app's `attribute_mapping["affiliation"]`
    that the IdP released. OIDC: the app's `affiliation_claim`, from userinfo or
    else the id_token. An IdP that releases none gives [].
    """
    app_settings = provider.app.settings if provider.app else {}
    if provider.id == "saml":
        names = app_settings.get("attribute_mapping", {}).get(
            "affiliation", SAML_ATTRIBUTES["affiliation"])
        sources = [extra_data]
    elif provider.id == "openid_connect":
        names = [app_settings.get("affiliation_claim", OIDC_AFFILIATION_CLAIM)]
        sources = [extra_data.get("userinfo") or {}, extra_data.get("id_token") or {}]
    else:
        return []
    if isinstance(names, str):
        names = [names]
    for source in sources:
        for name in names:
            value = source.get(name)
            if isinstance(value, str):
                value = [value]
            if isinstance(value, list):
                values = [str(v).strip() for v in value if str(v).strip()]
                if values:
                    return values
    return []


def affiliation_for_user(*, user) -> list[str]:
    """Affiliations from the user's most recent university sign-in; [] if none."""
    from allauth.socialaccount.models import SocialAccount

    account = (SocialAccount.objects.filter(user=user).order_by("-last_login")
               .only("extra_data").first())
    return list(account.extra_data.get("affiliation", [])) if account else []
