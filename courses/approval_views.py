"""Request pages: a member asks for a template or more budget and follows their
requests; staff see the course's requests and approve or deny them. Thin: the
rules are in courses/approvals.py. Outsiders 404; a role that may not → 403.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from courses import approvals as service
from courses.approval_forms import ApprovalDecideForm, ApprovalRequestForm
from courses.models import Membership
from courses.policy import Action, membership_may
from courses.setup import local_instant


def _requests_page(request, actor: Membership, *, form=None, status: int = 200):
    course = actor.course
    templates = service.requestable_templates(course=course)
    service.approvals_mark_seen(membership=actor)  # the outcomes are on this page
    return render(request, "courses/approval_requests.html", {
        "course": course, "actor": actor, "templates": templates,
        "form": form or ApprovalRequestForm(templates=templates),
        "requests": service.approvals_of_member(membership=actor),
        "is_staff": membership_may(actor=actor, action=Action.VIEW_APPROVALS),
    }, status=status)


@login_required
def approval_requests(request, course_id: int):
    """Any active member: their own requests, and the form to ask."""
    actor = service.approvals_actor(user=request.user, course_id=course_id,
                                    action=Action.REQUEST_APPROVAL)
    if request.method != "POST":
        return _requests_page(request, actor)
    form = ApprovalRequestForm(request.POST,
                               templates=service.requestable_templates(course=actor.course))
    if form.is_valid():
        data = form.cleaned_data
        try:
            approval = service.approval_request(
                membership=actor, kind=data["kind"], reason=data["reason"],
                template_slug=data["template_slug"], amount=data["amount"])
        except ValidationError as error:
            form.add_service_errors(error)
        else:
            messages.success(request, f"Asked for {approval.what}. You will get an email "
                                      "when staff decide.")
            return redirect("approval-requests", course_id)
    return _requests_page(request, actor, form=form, status=400)


@login_required
@require_POST
def approval_withdraw(request, course_id: int, approval_id: int):
    approval, actor = service.approval_get_for(user=request.user, course_id=course_id,
                                               approval_id=approval_id,
                                               action=Action.REQUEST_APPROVAL)
    try:
        service.approval_withdraw(approval=approval, actor=actor)
        messages.success(request, f"Withdrew your request for {approval.what}.")
    except service.ApprovalConflict as conflict:
        messages.error(request, str(conflict))
    return redirect("approval-requests", course_id)


def _staff_page(request, actor: Membership, *, forms=None, status: int = 200,
                fragment: bool = False):
    course = actor.course
    pending, decided = service.approvals_for_staff(course=course)
    forms = forms or {}
    rows = [(a, forms.get(a.pk) or ApprovalDecideForm(prefix=f"a{a.pk}")) for a in pending]
    return render(request, "courses/_approvals_panel.html" if fragment
                  else "courses/approvals.html", {
        "course": course, "actor": actor, "rows": rows, "decided": decided,
        "can_decide": membership_may(actor=actor, action=Action.DECIDE_APPROVAL),
    }, status=status)


@login_required
def approvals_page(request, course_id: int):
    """Course staff: pending requests with approve / deny, and recent decisions."""
    actor = service.approvals_actor(user=request.user, course_id=course_id,
                                    action=Action.VIEW_APPROVALS)
    return _staff_page(request, actor)


@login_required
@require_POST
def approval_decide(request, course_id: int, approval_id: int):
    approval, actor = service.approval_get_for(user=request.user, course_id=course_id,
                                               approval_id=approval_id,
                                               action=Action.DECIDE_APPROVAL)
    form = ApprovalDecideForm(request.POST, prefix=f"a{approval.pk}")
    if form.is_valid():
        data = form.cleaned_data
        expires = data["expires_at"]
        try:
            decided = service.approval_decide(
                approval=approval, actor=actor, approve=data["decision"] == "approve",
                expires_at=local_instant(expires, actor.course.time_zone) if expires else None,
                note=data["note"])
        except ValidationError as error:
            form.add_service_errors(error)
        except service.ApprovalConflict as conflict:
            messages.error(request, str(conflict))
            return _after_decision(request, actor)
        else:
            messages.success(request, f"{decided.get_status_display()}: "
                                      f"{decided.membership.display_name}'s request for "
                                      f"{decided.what}.")
            return _after_decision(request, actor)
    return _staff_page(request, actor, forms={approval.pk: form}, status=400,
                       fragment=bool(request.htmx))


def _after_decision(request, actor: Membership):
    if request.htmx:
        return _staff_page(request, actor, fragment=True)
    return redirect("course-approvals", actor.course_id)
