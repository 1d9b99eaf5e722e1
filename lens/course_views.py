"""Course staff's pages: the live course page (every student's workspaces,
spend and last activity), every member's spend against their cap, and one
member's budget with the forms to change it. Thin: numbers come from billing
and provisioning.course_page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render

from billing.models import BudgetAlert, LedgerEntry
from billing.reports import course_money
from courses.help_queue import help_queue_counts
from courses.models import Membership
from courses.policy import Action, membership_may
from courses.services import membership_get_active, membership_get_for
from lens.budgets import member_adjustment_grant, member_cap_change
from lens.forms import AdjustmentForm, CapForm
from provisioning import course_page as page
from provisioning.metering import member_money_get as member_money
from provisioning.models import Workspace
from provisioning.states import State


def _actor(request, course_id: int) -> Membership:
    actor = membership_get_active(user=request.user, course_id=course_id)
    if actor is None:
        raise Http404("No such course.")
    return actor


@login_required
def course_page(request, course_id: int):
    """Staff only: students get 403 (they have their dashboard), outsiders 404."""
    actor = _actor(request, course_id)
    if not page.course_page_may_view(actor):
        raise PermissionDenied("Only course staff see the course page.")
    course = actor.course
    section = request.GET.get("section", "")
    sort = request.GET.get("sort", "name")
    sort = sort if sort in page.SORTS else "name"
    return render(request, "lens/course_page.html", {
        "course": course, "actor": actor,
        "rows": page.course_student_rows(course=course, section=section, sort=sort),
        "sections": list(course.sections.all()), "filter_section": section, "sort": sort,
        "pending_approvals": page.pending_approvals_count(course=course),
        "help_queue": help_queue_counts(course_ids=[course.pk])[course.pk],
        "events": page.course_events_recent(course_id=course.pk)})


@login_required
def course_budget(request, course_id: int):
    actor = _actor(request, course_id)
    if not membership_may(actor=actor, action=Action.VIEW_COURSE_MONEY):
        raise PermissionDenied("Only course staff see everyone's spend.")
    money = course_money(course=actor.course)
    live = {}
    for w in (Workspace.objects.filter(owner__course_id=course_id)
              .exclude(state__in=[State.TERMINATED, State.ARCHIVED])
              .only("owner_id", "name", "state", "stop_reason").order_by("created_at")):
        live.setdefault(w.owner_id, []).append(w)
    alerts = BudgetAlert.objects.filter(course_id=course_id).select_related("membership")[:10]
    rows = [(row, live.get(row.membership.pk, [])) for row in money.rows]
    return render(request, "lens/course_budget.html", {
        "course": actor.course, "money": money, "rows": rows, "alerts": alerts,
        "can_manage": membership_may(actor=actor, action=Action.MANAGE_BUDGET,
                                     owner=actor)})


@login_required
def member_budget(request, course_id: int, membership_id: int):
    actor = _actor(request, course_id)
    member = membership_get_for(user=request.user, membership_id=membership_id,
                                action=Action.VIEW_MONEY)
    if member.course_id != course_id:
        raise Http404("No such member.")
    can_manage = membership_may(actor=actor, action=Action.MANAGE_BUDGET, owner=member)
    cap_form, adjust_form, status = CapForm(), AdjustmentForm(), 200
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied("Only instructors change budgets.")
        if request.POST.get("form") == "cap":
            cap_form = CapForm(request.POST)
            if cap_form.is_valid():
                data = cap_form.cleaned_data
                member_cap_change(membership=member, cap=data["cap"], actor=request.user,
                                  reason=data["reason"], key=data["key"])
                messages.success(request, f"{member.display_name}'s cap is now ${data['cap']}.")
                return redirect(request.path)
        else:
            adjust_form = AdjustmentForm(request.POST)
            if adjust_form.is_valid():
                data = adjust_form.cleaned_data
                member_adjustment_grant(membership=member, amount=data["amount"],
                                        actor=request.user, reason=data["reason"],
                                        key=data["key"])
                messages.success(request, f"Recorded an adjustment of ${data['amount']}.")
                return redirect(request.path)
        status = 400
    lines = (LedgerEntry.objects.filter(membership=member).exclude(kind__in=["hold", "release"])
             .select_related("actor").order_by("-created_at", "-pk")[:200])
    return render(request, "lens/member_budget.html", {
        "course": member.course, "member": member, "money": member_money(member),
        "lines": lines, "can_manage": can_manage, "cap_form": cap_form,
        "adjust_form": adjust_form}, status=status)
