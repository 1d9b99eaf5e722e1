"""The home page: the signed-in member's dashboard, or the landing page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from rest_framework.authtoken.models import Token

from courses.models import Membership
from provisioning.cards import member_workspace_cards
from provisioning.metering import member_money_get
from provisioning.services import course_template_offers


def home(request):
    if not request.user.is_authenticated:
        return render(request, "lens/landing.html")
    memberships = list(Membership.objects.active().of_user(request.user)
                       .select_related("course").order_by("course__code"))
    offers = course_template_offers(course_ids=[m.course_id for m in memberships])
    cards = member_workspace_cards(membership_ids=[m.pk for m in memberships])
    courses = [{"membership": m, "course": m.course, "offers": offers[m.course_id],
                "spot_offered": any(o.template.spot_allowed for o in offers[m.course_id]),
                "cards": cards[m.pk],
                "money": member_money_get(m, workspaces=[c.workspace for c in cards[m.pk]])}
               for m in memberships]
    return render(request, "lens/home.html", {"courses": courses})


@login_required
def api_token(request):
    """Show the user's API token; POST makes a new one (the old one stops working)."""
    if request.method == "POST":
        Token.objects.filter(user=request.user).delete()
        token = Token.objects.create(user=request.user)
        messages.success(request, "A new API token was made; the previous one no longer works.")
        return redirect("api-token")
    token = Token.objects.filter(user=request.user).first()
    return render(request, "lens/api_token.html", {"token": token})
