"""Workshop pages: joining with the code (anyone) and the code itself (instructor).

Thin: the rules are in courses.workshops. Joining is open to people who are not
signed in, so wrong codes count per client address (see workshops.GUESS_LIMIT).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from courses import setup, workshops
from courses.models import Course, Membership
from courses.policy import Action

_BACKEND = "django.contrib.auth.backends.ModelBackend"


class JoinForm(forms.Form):
    code = forms.CharField(max_length=40, label="Access code", required=False,
                           widget=forms.TextInput(attrs={"autocomplete": "off",
                                                         "autocapitalize": "characters"}))
    email = forms.CharField(max_length=254, label="Your email", required=False,
                            widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    name = forms.CharField(max_length=200, label="Your name", required=False,
                           widget=forms.TextInput(attrs={"autocomplete": "name"}))


def _client(request) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def workshop_join(request, code: str = ""):
    """GET: the form (code filled in from /w/<code>/); POST: join and sign in."""
    signed_in = request.user.is_authenticated
    if request.method != "POST":
        form = JoinForm(initial={"code": code})
        return _join_page(request, form, signed_in)
    form = JoinForm(request.POST)
    form.is_valid()
    data = form.cleaned_data
    try:
        joined = workshops.workshop_join(
            code=data.get("code", ""), email=data.get("email", ""), name=data.get("name", ""),
            user=request.user if signed_in else None, client=_client(request))
    except workshops.WorkshopError as error:
        for name, message in error.errors.items():
            form.add_error(name or None, message)
        sign_in = isinstance(error, workshops.SignInFirst)
        return _join_page(request, form, signed_in, sign_in=sign_in, status=400)
    if not signed_in:
        login(request, joined.user, backend=_BACKEND)
    course = joined.membership.course
    messages.success(request, f"Welcome to {course.title}." if joined.created
                     else f"You are in {course.title}.")
    return redirect("home")


def _join_page(request, form, signed_in: bool, *, sign_in: bool = False, status: int = 200):
    code = form.data.get("code", "") if form.is_bound else form.initial.get("code", "")
    login_next = f"{reverse('account_login')}?next={reverse('workshop-join')}"
    if code:
        login_next = (f"{reverse('account_login')}?next="
                      f"{reverse('workshop-join-code', args=[code])}")
    return render(request, "courses/workshop_join.html", {
        "form": form, "signed_in": signed_in, "sign_in": sign_in, "login_next": login_next},
        status=status)


def _instructor(request, course_id: int) -> Course:
    return setup.course_actor_get(user=request.user, course_id=course_id,
                                  action=Action.MANAGE_WORKSHOP_CODE).course


@login_required
def workshop_page(request, course_id: int):
    """The instructor's view: the code, a link to copy, the times, who joined."""
    course = _instructor(request, course_id)
    display = workshops.access_code_display(course.access_code) if course.access_code else ""
    participants = (Membership.objects.filter(course=course, role=Membership.Role.STUDENT)
                    .order_by("-created_at"))
    return render(request, "courses/workshop.html", {
        "course": course, "code": display,
        "join_url": request.build_absolute_uri(reverse("workshop-join-code", args=[display]))
        if display else "",
        "participants": participants,
        "active": sum(1 for p in participants if p.status == Membership.Status.ACTIVE)})


@login_required
@require_POST
def workshop_code_regenerate(request, course_id: int):
    course = _instructor(request, course_id)
    if course.kind != Course.Kind.WORKSHOP:
        messages.error(request, "Only workshops have an access code.")
    else:
        workshops.workshop_code_regenerate(course=course)
        messages.success(request, "New code made; the old one no longer works.")
    return redirect("workshop-page", course.pk)
