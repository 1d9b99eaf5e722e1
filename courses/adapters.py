"""django-allauth hooks: joining invited courses at sign-in."""

from allauth.account.adapter import DefaultAccountAdapter

from courses.services import membership_claim_invitations


class LensAccountAdapter(DefaultAccountAdapter):
    def login(self, request, user):
        membership_claim_invitations(user=user)
        return super().login(request, user)
