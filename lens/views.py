"""The home page: the signed-in member's dashboard, or the landing page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework.authtoken.models import Token

from courses.approvals import approvals_dashboard, approvals_mark_seen
from courses.help_queue import help_queue_counts, help_requests_current
from courses.inbox import inboxes_for
from courses.live import member_help_context
from courses.models import Membership
from courses.services import membership_get_active
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
    # Messages and help: a constant number of queries whatever the inbox holds.
    inboxes = inboxes_for(membership_ids=[m.pk for m in memberships])
    students = [m for m in memberships if not m.is_staff_role]
    current_help = help_requests_current(membership_ids=[m.pk for m in students])
    queues = help_queue_counts(course_ids=[m.course_id for m in memberships
                                           if m.is_staff_role])
    requests = approvals_dashboard(membership_ids=[m.pk for m in memberships])
    courses = [{"membership": m, "course": m.course, "offers": offers[m.course_id],
                "cards": cards[m.pk], "requests": requests[m.pk],
                "spot_offered": any(o.template.spot_allowed for o in offers[m.course_id]),
                "offer_rows": [(o, requests[m.pk].granted.get(o.template.slug))
                               for o in offers[m.course_id]],
                "money": member_money_get(m, workspaces=[c.workspace for c in cards[m.pk]]),
                "inbox": inboxes[m.pk], "queue": queues.get(m.course_id),
                "help": None if m.is_staff_role else member_help_context(
                    membership=m, current=current_help.get(m.pk),
                    workspaces=[(c.workspace.pk, c.workspace.name) for c in cards[m.pk]])}
               for m in memberships]
    for entry in courses:
        entry["default_slug"] = _default_offer_slug(entry["offer_rows"])
    return render(request, "lens/home.html", {"courses": courses})


def _default_offer_slug(rows) -> str:
    """The template the launch form starts on: the cheapest one this member may launch
    right away (approved for them, no shared slots), not merely the first by name."""
    ready = [offer for offer, granted in rows
             if (not offer.approved.requires_approval or granted) and not offer.approved.capacity]
    if not ready:
        return rows[0][0].template.slug if rows else ""
    priced = [o for o in ready if o.usd_per_hour is not None]
    return min(priced or ready, key=lambda o: o.usd_per_hour or 0).template.slug


@login_required
@require_POST
def notices_dismiss(request, course_id: int):
    """The member has read the outcomes of their requests shown on the dashboard."""
    membership = membership_get_active(user=request.user, course_id=course_id)
    if membership is None:
        raise Http404("No such course.")
    approvals_mark_seen(membership=membership)
    if request.htmx:
        return HttpResponse("")
    return redirect("home")


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
