"""LTI 1.3 pages and endpoints. Thin: the protocol is in courses/lti.py.

/lti/login/ and /lti/launch/ are called cross-site by the LMS, so they are
exempt from CSRF; the launch is authenticated by its signed id_token and the
single-use state instead.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from courses import lti
from courses.models import LtiContext, Membership
from courses.policy import Action, membership_may
from courses.services import membership_get_active

# Session key: LMS contexts this browser launched, and those it launched as
# an LMS instructor (who may link them to a Lens course).
SESSION_LAUNCHED = "lti_launched_contexts"
SESSION_LINKABLE = "lti_linkable_contexts"


def _refused(request, exc: lti.LtiError):
    return render(request, "courses/lti_error.html", {"message": str(exc)}, status=exc.status)


@require_GET
def jwks(request):
    return JsonResponse(lti.lti_tool_jwks())


@require_GET
def canvas_config(request):
    return JsonResponse(lti.lti_canvas_config())


@csrf_exempt
@require_http_methods(["GET", "POST"])
def login_initiation(request):
    params = request.POST if request.method == "POST" else request.GET
    try:
        url = lti.lti_login_start(params=params)
    except lti.LtiError as exc:
        return _refused(request, exc)
    return redirect(url)


@csrf_exempt
@require_POST
def launch(request):
    if request.POST.get("error"):
        return _refused(request, lti.LtiError(
            "The LMS did not sign you in: " + (request.POST.get("error_description")
                                              or request.POST["error"])))
    try:
        platform, claims = lti.lti_launch_validate(id_token=request.POST.get("id_token", ""),
                                                   state=request.POST.get("state", ""))
        result = lti.lti_launch_complete(platform=platform, claims=claims)
    except lti.LtiError as exc:
        return _refused(request, exc)
    login(request, result.user, backend="django.contrib.auth.backends.ModelBackend")
    if result.context.course_id is not None:
        messages.success(request, f"Signed in from {platform.name} as "
                                  f"{result.membership.get_role_display()} in "
                                  f"{result.context.course.code}.")
        return redirect("home")
    request.session[SESSION_LAUNCHED] = [result.context.pk]
    request.session[SESSION_LINKABLE] = (
        [result.context.pk] if result.role == Membership.Role.INSTRUCTOR else [])
    return redirect("lti-context", context_id=result.context.pk)


def _linkable_memberships(user):
    return [m for m in Membership.objects.active().of_user(user).select_related("course")
            .order_by("course__code") if membership_may(actor=m, action=Action.LINK_LMS)]


@login_required
@require_http_methods(["GET", "POST"])
def context_page(request, context_id: int):
    """An LMS course that is not linked yet: who may link it does so here."""
    if context_id not in request.session.get(SESSION_LAUNCHED, []):
        raise Http404("No such LMS course.")
    context = get_object_or_404(LtiContext.objects.select_related("platform", "course"),
                                pk=context_id)
    if context.course_id is not None:
        return redirect("home")
    may_link = context_id in request.session.get(SESSION_LINKABLE, [])
    choices = _linkable_memberships(request.user) if may_link else []
    error, status = "", 200
    if request.method == "POST":
        if not may_link:
            raise PermissionDenied("Only the LMS course's instructor may link it.")
        chosen = next((m for m in choices if str(m.course_id) == request.POST.get("course")),
                      None)
        if chosen is None:
            error, status = "Choose a course you teach in Lens.", 400
        else:
            try:
                lti.lti_context_link(context=context, course=chosen.course)
            except lti.LtiError as exc:
                return _refused(request, exc)
            messages.success(request, f"{context.title or 'The LMS course'} is now linked to "
                                      f"{chosen.course.code}. Students who open Lens from the "
                                      "LMS join it.")
            return redirect("lti-course", course_id=chosen.course_id)
    return render(request, "courses/lti_context.html", {
        "context": context, "may_link": may_link, "choices": choices, "error": error,
        "selected": request.POST.get("course", "")}, status=status)


def _staff_actor(request, course_id: int) -> Membership:
    actor = membership_get_active(user=request.user, course_id=course_id)
    if actor is None:
        raise Http404("No such course.")
    if not membership_may(actor=actor, action=Action.SYNC_LMS_ROSTER):
        raise PermissionDenied("Only instructors and head TAs manage the LMS roster.")
    return actor


@login_required
@require_GET
def course_page(request, course_id: int):
    """The course's LMS links, the last roster sync, and the button to sync again."""
    actor = _staff_actor(request, course_id)
    contexts = (LtiContext.objects.filter(course_id=course_id).select_related("platform")
                .order_by("pk"))
    return render(request, "courses/lti_course.html", {"course": actor.course,
                                                       "contexts": contexts})


@login_required
@require_POST
def course_sync(request, course_id: int):
    actor = _staff_actor(request, course_id)
    queued = lti.lti_roster_sync_request(course=actor.course)
    if queued:
        messages.success(request, "Roster sync started; reload in a moment to see what changed.")
    else:
        messages.error(request, "No linked LMS course offers a member list yet: an instructor "
                                "must open Lens from the LMS course once.")
    return redirect("lti-course", course_id=course_id)
