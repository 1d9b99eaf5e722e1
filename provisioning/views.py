"""Workspace pages and htmx actions. Thin: policy and work are in services."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from courses.policy import Action, membership_may
from courses.services import membership_get_active
from provisioning import lifecycle, services, slots
from provisioning.access import workspace_get_for
from provisioning.cards import member_workspace_context
from provisioning.connect import workspace_connect
from provisioning.forms import EstimateForm
from provisioning.states import State


def _list_fragment(request, membership_id: int, *, status: int = 200,
                   notice: str = "", error: str = "", warning: str = "") -> HttpResponse:
    context = {**member_workspace_context(membership_id=membership_id), "oob": True,
               "notice": notice, "error": error, "warning": warning}
    return render(request, "provisioning/_action_result.html", context, status=status)


@login_required
@require_POST
def launch(request, course_id: int):
    membership = membership_get_active(user=request.user, course_id=course_id)
    if membership is None:
        raise Http404("You are not a member of this course.")
    try:
        workspace = services.workspace_launch(
            membership=membership, template_slug=request.POST.get("template", ""),
            name=request.POST.get("name", ""), actor=request.user,
            market=request.POST.get("market") or "on_demand")
    except services.LaunchRefused as refusal:
        if not request.htmx:
            messages.error(request, refusal.message)
            return redirect("home")
        return _list_fragment(request, membership.pk, status=refusal.status, error=refusal.message)
    notice = f"Launching {workspace.name} — this page updates as it comes up."
    if workspace.state == State.QUEUED:
        notice = (f"Every slot for {workspace.template.slug} is in use, so {workspace.name} "
                  "is in line; it starts by itself when a slot frees.")
    if not request.htmx:
        messages.success(request, notice)
        if workspace.launch_warning:
            messages.warning(request, workspace.launch_warning)
        return redirect("home")
    return _list_fragment(request, membership.pk, notice=notice,
                          warning=workspace.launch_warning)


def _operate(request, workspace_id: int, operation, *, action: Action = Action.OPERATE_WORKSPACE,
             notice: str = "") -> HttpResponse:
    workspace = workspace_get_for(user=request.user, workspace_id=workspace_id, action=action)
    error = ""
    try:
        operation(workspace=workspace, actor=request.user)
    except services.TransitionError as exc:
        error = str(exc)
    notice = "" if error else notice.format(name=workspace.name)
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        if request.POST.get("from") == "detail" and action is not Action.DELETE_WORKSPACE:
            return redirect("workspace-detail", workspace.pk)
        return redirect("home")
    return _list_fragment(request, workspace.owner_id, status=409 if error else 200, error=error,
                          warning=workspace.launch_warning, notice=notice)


@login_required
@require_POST
def stop(request, workspace_id: int):
    return _operate(request, workspace_id, services.workspace_stop)


@login_required
@require_POST
def start(request, workspace_id: int):
    return _operate(request, workspace_id, services.workspace_start)


@login_required
@require_POST
def leave_queue(request, workspace_id: int):
    return _operate(request, workspace_id, slots.queue_leave)


@login_required
def slots_page(request, course_id: int):
    """Staff only: every capacity pool's holders and line. Students 403, outsiders 404."""
    actor = membership_get_active(user=request.user, course_id=course_id)
    if actor is None:
        raise Http404("No such course.")
    if not membership_may(actor=actor, action=Action.VIEW_SLOTS):
        raise PermissionDenied("Only course staff see who holds the slots.")
    template = ("provisioning/_slots_pools.html" if request.htmx
                else "provisioning/slots.html")
    return render(request, template, {"course": actor.course,
                                      "pools": slots.course_pools(course_id=course_id),
                                      "now": timezone.now()})


@login_required
@require_POST
def hibernate(request, workspace_id: int):
    return _operate(request, workspace_id, lifecycle.workspace_hibernate)


@login_required
@require_POST
def reset(request, workspace_id: int):
    return _operate(request, workspace_id, lifecycle.workspace_reset,
                    action=Action.RESET_WORKSPACE,
                    notice="Resetting {name}: the files in /home stay; the card shows each step.")


@login_required
@require_POST
def delete(request, workspace_id: int):
    return _operate(request, workspace_id, lifecycle.workspace_terminate,
                    action=Action.DELETE_WORKSPACE,
                    notice="Deleting {name}. Its home volume is backed up first.")


@login_required
def detail(request, workspace_id: int):
    workspace = workspace_get_for(user=request.user, workspace_id=workspace_id,
                                  action=Action.VIEW_WORKSPACE)
    events = workspace.events.select_related("actor").order_by("at", "pk")
    is_owner = workspace.owner.user_id == request.user.pk
    return render(request, "provisioning/workspace_detail.html",
                  {"workspace": workspace, "events": events,
                   "course": workspace.owner.course, "is_owner": is_owner,
                   "connect": workspace_connect(workspace=workspace, viewer_is_owner=is_owner),
                   "backups": workspace.backups.filter(deleted_at=None),
                   "retention_days": settings.LENS_BACKUP_RETENTION_DAYS,
                   **_lifecycle_permissions(request.user, workspace)})


def _lifecycle_permissions(user, workspace) -> dict:
    """Which of the lifecycle buttons this viewer may see on the detail page."""
    from courses.models import Membership
    from courses.policy import membership_may

    actor = Membership.objects.active().filter(user=user,
                                               course_id=workspace.owner.course_id).first()
    return {f"may_{name}": membership_may(actor=actor, action=action, owner=workspace.owner)
            for name, action in (("operate", Action.OPERATE_WORKSPACE),
                                 ("reset", Action.RESET_WORKSPACE),
                                 ("delete", Action.DELETE_WORKSPACE))}


@login_required
def estimate(request, course_id: int, slug: str):
    """What a template costs per session, week and month, against the member's budget."""
    membership = membership_get_active(user=request.user, course_id=course_id)
    if membership is None:
        raise Http404("You are not a member of this course.")
    offer = services.course_offer_get(membership=membership, template_slug=slug)
    if offer is None:
        raise Http404("That template is not approved for this course.")
    form = EstimateForm(request.GET or {name: field.initial
                                        for name, field in EstimateForm.base_fields.items()})
    plan = None
    if form.is_valid():
        plan = services.offer_estimate(offer=offer, membership=membership,
                                       session_hours=form.cleaned_data["hours"],
                                       sessions_per_week=form.cleaned_data["sessions"])
    return render(request, "provisioning/estimate.html",
                  {"form": form, "offer": offer, "plan": plan, "course": membership.course,
                   "membership": membership})
