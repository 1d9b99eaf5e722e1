"""django-allauth hooks: joining invited courses at sign-in, university SSO."""

import logging

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.internal.decorators import login_not_required
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.internal import jwtkit
from allauth.socialaccount.models import SocialApp
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.conf import settings
from django.http import Http404

from courses.services import membership_claim_invitations
from courses.sso import affiliation_extract

logger = logging.getLogger(__name__)


class LensAccountAdapter(DefaultAccountAdapter):
    def login(self, request, user):
        # Every way in (password, SAML, OIDC) ends here, so an SSO sign-in
        # joins the courses the IdP's email was invited to as well.
        membership_claim_invitations(user=user)
        return super().login(request, user)

    def is_open_for_signup(self, request):
        """Local (email and password) sign-up, off with ACCOUNT_ALLOW_SIGNUPS=false."""
        return settings.ACCOUNT_ALLOW_SIGNUPS


class LensSocialAccountAdapter(DefaultSocialAccountAdapter):
    """University sign-in: keep the IdP's affiliation with the account.

    Name and email reach the new user through allauth's `populate_user` (SAML
    `attribute_mapping`, OIDC standard claims). The affiliation (student,
    faculty, staff, …) has no User field, so it is kept in the social
    account's extra data under "affiliation", refreshed at every sign-in.
    """

    def is_open_for_signup(self, request, sociallogin):
        # Anyone the university vouches for may have an account; they see only
        # the courses they were invited to. ACCOUNT_ALLOW_SIGNUPS is for local ones.
        return True

    def pre_social_login(self, request, sociallogin):
        account = sociallogin.account
        affiliation = affiliation_extract(provider=sociallogin.provider,
                                          extra_data=account.extra_data)
        if affiliation == account.extra_data.get("affiliation"):
            return
        if affiliation:
            account.extra_data["affiliation"] = affiliation
        else:
            account.extra_data.pop("affiliation", None)
        if account.pk:
            account.save(update_fields=["extra_data"])

    def on_authentication_error(self, request, provider, error=None, exception=None,
                                extra_context=None):
        # The page says only "not signed in"; the reason is for whoever runs Lens.
        saml_reason = (extra_context or {}).get("saml_last_error_reason", "")
        logger.warning("Sign-in through %s refused: %s %s %s",
                       getattr(provider, "name", provider), error, exception or "", saml_reason)


class SignedIdTokenOIDCAdapter(OpenIDConnectOAuth2Adapter):
    """Check the id_token's signature against the provider's JWKS every time.

    allauth skips the check for a token fetched straight from the token
    endpoint (OIDC Core allows that over TLS); Lens verifies anyway, so a
    spoofed or misconfigured token endpoint cannot sign anyone in.
    """

    def _decode_id_token(self, app, id_token):
        return jwtkit.verify_and_decode(
            credential=id_token,
            keys_url=self.openid_config["jwks_uri"],
            issuer=self.openid_config["issuer"],
            audience=app.client_id,
            lookup_kid=jwtkit.lookup_kid_jwk,
            verify_signature=True,
        )


@login_not_required
def oidc_callback(request, provider_id):
    """allauth's OIDC callback view with `SignedIdTokenOIDCAdapter` (routed in lens/urls.py)."""
    try:
        view = OAuth2CallbackView.adapter_view(SignedIdTokenOIDCAdapter(request, provider_id))
        return view(request)
    except SocialApp.DoesNotExist:
        raise Http404("No such sign-in provider.") from None
