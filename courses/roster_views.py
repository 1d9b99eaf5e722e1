"""The roster pages: who is in a course, adding and importing people, revoking.

Thin: rules are in courses/roster.py. Staff see the roster (TAs read-only),
instructors and head TAs change it; students get 403, outsiders 404.
"""

from __future__ import annotations

import base64
import binascii

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from courses import roster
from courses.models import Membership
from courses.policy import Action, membership_may
from courses.roster_forms import ImportForm, MemberAddForm, SectionForm


def _actor(request, course_id: int, action: Action) -> Membership:
    return roster.roster_actor(user=request.user, course_id=course_id, action=action)


def _member(course_id: int, membership_id: int) -> Membership:
    return roster.roster_member_get(course_id=course_id, membership_id=membership_id)


def _page(request, actor: Membership, *, add_form=None, section_form=None, import_form=None,
          status: int = 200):
    course = actor.course
    section = request.GET.get("section", "")
    state = request.GET.get("status", "")
    state = state if state in Membership.Status.values else ""
    sections = list(course.sections.all())
    can_manage = membership_may(actor=actor, action=Action.MANAGE_ROSTER)
    return render(request, "courses/roster.html", {
        "course": course, "actor": actor, "can_manage": can_manage,
        "members": list(roster.roster_list(course=course, section=section, status=state)),
        "sections": sections, "counts": roster.roster_counts(course=course),
        "filter_section": section, "filter_status": state,
        "statuses": Membership.Status.choices,
        "add_form": add_form or MemberAddForm(actor=actor, sections=sections),
        "section_form": section_form or SectionForm(),
        "import_form": import_form or ImportForm(),
    }, status=status)


@login_required
def roster_page(request, course_id: int):
    return _page(request, _actor(request, course_id, Action.VIEW_ROSTER))


@login_required
@require_POST
def member_add(request, course_id: int):
    actor = _actor(request, course_id, Action.MANAGE_ROSTER)
    form = MemberAddForm(request.POST, actor=actor, sections=list(actor.course.sections.all()))
    if form.is_valid():
        try:
            member = roster.membership_invite(course=actor.course, actor=actor,
                                              **form.cleaned_data)
        except roster.RosterError as error:
            form.add_roster_errors(error)
        else:
            messages.success(request, f"Invited {member.email}; the invitation is on its way.")
            return redirect("course-roster", course_id)
    return _page(request, actor, add_form=form, status=400)


@login_required
@require_POST
def section_add(request, course_id: int):
    actor = _actor(request, course_id, Action.MANAGE_ROSTER)
    form = SectionForm(request.POST)
    if form.is_valid():
        try:
            section = roster.section_create(course=actor.course, name=form.cleaned_data["name"])
        except roster.RosterError as error:
            form.add_roster_errors(error)
        else:
            messages.success(request, f"Added section {section.name}.")
            return redirect("course-roster", course_id)
    return _page(request, actor, section_form=form, status=400)


@login_required
@require_POST
def member_revoke(request, course_id: int, membership_id: int):
    actor = _actor(request, course_id, Action.MANAGE_ROSTER)
    member = _member(course_id, membership_id)
    try:
        roster.membership_revoke(membership=member, actor=actor)
    except roster.RosterError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Revoked {member.email}: they can no longer use "
                                  f"{actor.course.code}, and their running workspaces stop.")
    return redirect("course-roster", course_id)


@login_required
@require_POST
def member_reinvite(request, course_id: int, membership_id: int):
    actor = _actor(request, course_id, Action.MANAGE_ROSTER)
    member = _member(course_id, membership_id)
    try:
        roster.membership_reinvite(membership=member, actor=actor)
    except roster.RosterError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Sent the invitation to {member.email} again.")
    return redirect("course-roster", course_id)


def _preview_page(request, actor: Membership, preview: roster.ImportPreview, data: bytes,
                  *, status: int, stale: str = ""):
    return render(request, "courses/roster_import.html", {
        "course": actor.course, "preview": preview, "stale": stale,
        "data": base64.b64encode(data).decode() if preview.ok else "",
        "import_form": ImportForm(), "max_rows": roster.MAX_ROWS,
    }, status=status)


@login_required
@require_POST
def import_preview(request, course_id: int):
    actor = _actor(request, course_id, Action.MANAGE_ROSTER)
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, actor, import_form=form, status=400)
    upload = form.cleaned_data["file"]
    if upload.size > roster.MAX_BYTES:  # not even read
        data = b""
        preview = roster.ImportPreview(file_error=roster.too_big_message(upload.size))
    else:
        data = upload.read()
        preview = roster.roster_import_preview(course=actor.course, actor=actor, data=data)
    return _preview_page(request, actor, preview, data, status=200 if preview.ok else 400)


@login_required
@require_POST
def import_commit(request, course_id: int):
    actor = _actor(request, course_id, Action.MANAGE_ROSTER)
    try:
        data = base64.b64decode(request.POST.get("data", ""), validate=True)
    except binascii.Error:
        data = b""
    if not data:
        messages.error(request, "The upload did not come through; choose the file again.")
        return redirect("course-roster", course_id)
    try:
        result = roster.roster_import_commit(course=actor.course, actor=actor, data=data,
                                             expected_digest=request.POST.get("digest", ""))
    except roster.ImportStale as stale:
        return _preview_page(request, actor, stale.preview, data, status=409, stale=str(stale))
    except roster.ImportRefused as refused:
        return _preview_page(request, actor, refused.preview, data, status=400)
    messages.success(request, f"Imported the roster: {result.created} invited, "
                              f"{result.updated} updated, {result.unchanged} unchanged"
                              + (f", {result.revoked} revoked left as is" if result.revoked
                                 else "") + ".")
    return redirect("course-roster", course_id)
