"""Pages for messages and the help queue. Thin: rules are in courses/inbox.py and
courses/help_queue.py. Staff see and work the queue and write to students;
students ask for help and read their messages; outsiders get 404."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from courses import help_queue as queue
from courses import inbox
from courses.help_forms import MessageForm, ResolveForm
from courses.live import (
    help_ask_form,
    help_queue_context,
    member_help_context,
    member_inbox_context,
)
from courses.models import Membership
from courses.policy import Action, membership_may
from courses.services import membership_get_active

# --- the staff's queue -----------------------------------------------------------


@login_required
def help_queue_page(request, course_id: int):
    actor = queue.help_actor(user=request.user, course_id=course_id,
                             action=Action.VIEW_HELP_QUEUE)
    return render(request, "courses/help_queue.html",
                  {**help_queue_context(course=actor.course), "actor": actor, "oob": False})


def _queue_answer(request, actor: Membership, *, notice: str = "", error: str = "",
                  status: int = 200) -> HttpResponse:
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        return redirect("help-queue", actor.course_id)
    return render(request, "courses/_help_queue.html", {
        **help_queue_context(course=actor.course), "oob": False, "notice": notice,
        "error": error}, status=status)


def _handle(request, course_id: int, request_id: int, change, **kwargs) -> HttpResponse:
    actor = queue.help_actor(user=request.user, course_id=course_id, action=Action.HANDLE_HELP)
    found = queue.help_request_get(course_id=course_id, request_id=request_id)
    try:
        done = change(request=found, actor=actor, **kwargs)
    except queue.HelpError as error:
        return _queue_answer(request, actor, error=str(error), status=error.status)
    who = done.membership.display_name
    notice = {queue.Status.CLAIMED: f"You are helping {who}.",
              queue.Status.OPEN: f"{who}'s request is back in the queue.",
              queue.Status.RESOLVED: f"Resolved {who}'s request."}.get(done.status, "")
    return _queue_answer(request, actor, notice=notice)


@login_required
@require_POST
def help_claim(request, course_id: int, request_id: int):
    return _handle(request, course_id, request_id, queue.help_request_claim)


@login_required
@require_POST
def help_release(request, course_id: int, request_id: int):
    return _handle(request, course_id, request_id, queue.help_request_release)


@login_required
@require_POST
def help_resolve(request, course_id: int, request_id: int):
    form = ResolveForm(request.POST)
    if not form.is_valid():
        actor = queue.help_actor(user=request.user, course_id=course_id,
                                 action=Action.HANDLE_HELP)
        return _queue_answer(request, actor, error=" ".join(form.errors.get("note", [])),
                             status=400)
    return _handle(request, course_id, request_id, queue.help_request_resolve,
                   note=form.cleaned_data["note"])


# --- the student's side ------------------------------------------------------------


def _help_panel(request, actor: Membership, *, form=None, status: int = 200,
                notice: str = "") -> HttpResponse:
    return render(request, "courses/_help_panel.html",
                  {**member_help_context(membership=actor, form=form), "oob": False,
                   "notice": notice}, status=status)


@login_required
@require_POST
def help_ask(request, course_id: int):
    actor = queue.help_actor(user=request.user, course_id=course_id,
                             action=Action.OPEN_HELP_REQUEST)
    form = help_ask_form(membership=actor, data=request.POST,
                         workspaces=inbox.member_workspaces(membership_id=actor.pk))
    if form.is_valid():
        try:
            queue.help_request_open(actor=actor, summary=form.cleaned_data["summary"],
                                    details=form.cleaned_data["details"],
                                    workspace_id=form.cleaned_data["workspace"])
        except queue.HelpError as error:
            form.add_service_errors(error.errors)
        else:
            notice = "Your request is in the queue; a TA will pick it up."
            if not request.htmx:
                messages.success(request, notice)
                return redirect("home")
            return _help_panel(request, actor, notice=notice)
    if not request.htmx:
        for message in form.errors.values():
            messages.error(request, " ".join(message))
        return redirect("home")
    return _help_panel(request, actor, form=form, status=400)


@login_required
@require_POST
def help_cancel(request, course_id: int, request_id: int):
    actor = membership_get_active(user=request.user, course_id=course_id)
    if actor is None:
        raise Http404("No such course.")
    found = queue.help_request_get(course_id=course_id, request_id=request_id)
    if found.membership_id != actor.pk:
        raise Http404("No such help request.")  # not confirming another student's request
    error = ""
    try:
        queue.help_request_cancel(request=found, actor=actor)
    except queue.HelpError as refused:
        error = str(refused)
    if not request.htmx:
        (messages.error if error else messages.success)(request, error or "Request cancelled.")
        return redirect("home")
    return _help_panel(request, actor, notice=error or "Request cancelled.",
                       status=409 if error else 200)


# --- messages ------------------------------------------------------------------


@login_required
def message_compose(request, course_id: int, membership_id: int):
    """Staff write to one student, optionally about one of their workspaces."""
    actor = membership_get_active(user=request.user, course_id=course_id)
    recipient = Membership.objects.select_related("course").filter(
        pk=membership_id, course_id=course_id).first()
    if actor is None or recipient is None:
        raise Http404("No such member.")
    if not membership_may(actor=actor, action=Action.SEND_MESSAGE, owner=recipient):
        raise PermissionDenied("Course staff may message the students of their course.")
    workspaces = inbox.member_workspaces(membership_id=recipient.pk)
    form, status = MessageForm(workspaces=workspaces, initial={
        "workspace": request.GET.get("workspace")}), 200
    if request.method == "POST":
        form = MessageForm(request.POST, workspaces=workspaces)
        if form.is_valid():
            try:
                inbox.message_send(sender=actor, recipient=recipient,
                                   subject=form.cleaned_data["subject"],
                                   body=form.cleaned_data["body"],
                                   workspace_id=form.cleaned_data["workspace"])
            except inbox.InboxError as error:
                form.add_service_errors(error.errors)
            else:
                messages.success(request, f"Sent to {recipient.display_name}; they see it on "
                                          "their dashboard and by email.")
                return redirect("course-page", course_id)
        status = 400
    return render(request, "courses/message_compose.html", {
        "course": actor.course, "recipient": recipient, "form": form}, status=status)


@login_required
def message_open(request, message_id: int):
    """The student's message on its own page (the email links here); opening it reads it."""
    message = inbox.message_read(message=inbox.message_get_for(user=request.user,
                                                                message_id=message_id))
    return render(request, "courses/message.html", {"message": message,
                                                    "course": message.course})


@login_required
@require_POST
def message_read(request, message_id: int):
    """Opened on the dashboard: mark it read and return the inbox with it open."""
    message = inbox.message_read(message=inbox.message_get_for(user=request.user,
                                                                message_id=message_id))
    if not request.htmx:
        return redirect("message-open", message.pk)
    return render(request, "courses/_inbox.html", {
        **member_inbox_context(membership=message.recipient, opened=message.pk),
        "oob": False})
