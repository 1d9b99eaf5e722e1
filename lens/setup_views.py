"""Course wizard, settings page and "duplicate for next term". Thin: the rules
are in courses.setup and provisioning.approvals, composed by lens.course_setup.

Who may: creating needs the `courses.add_course` permission; the settings page
is for the course's staff, read-only for head TAs and TAs, and only the
instructor saves or duplicates; students get 403 and outsiders 404.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from courses import setup
from courses.forms import CourseDuplicateForm, CourseSettingsForm
from courses.models import Course, Membership
from courses.policy import Action, membership_may
from lens.course_setup import course_setup_create, course_setup_duplicate, course_setup_update
from provisioning.forms import template_approval_forms

_ZONES = sorted(z for z in setup.TIME_ZONES if "/" in z or z == "UTC")


def _staff(request, course_id: int, action: Action) -> Membership:
    return setup.course_actor_get(user=request.user, course_id=course_id, action=action)


def _may_create(user) -> None:
    if not user.has_perm(setup.CREATE_PERMISSION):
        raise PermissionDenied("You may not create courses; ask an administrator.")


def _decimal(raw) -> Decimal | None:
    try:
        return Decimal(str(raw)) if raw not in (None, "") else None
    except InvalidOperation:
        return None


def _int(raw) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _date(raw) -> date | None:
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        return None


def _summary(data, course: Course | None) -> dict:
    """The live summary, from whatever was typed so far (unparsable parts left out)."""
    plan = setup.course_budget_plan(
        budget_total=_decimal(data.get("budget_total")),
        per_student=_decimal(data.get("default_member_budget")),
        expected_students=_int(data.get("expected_students")), course=course)
    term = None
    zone, start, end = data.get("time_zone"), _date(data.get("start_date")), \
        _date(data.get("end_date"))
    if zone and setup.zone_is_known(str(zone)) and start and end and start <= end:
        starts, ends = setup.term_bounds(start=start, end=end, time_zone=str(zone))
        term = {"zone": zone, "starts": starts, "ends": ends, "days": (end - start).days + 1}
    elif start and end and start > end:
        term = {"problem": "The last day is before the first."}
    elif zone and not setup.zone_is_known(str(zone)):
        term = {"problem": f"Unknown time zone “{zone}”."}
    return {"plan": plan, "term": term}


def _form_data(form: CourseSettingsForm):
    return form.data if form.is_bound else {n: form[n].value() for n in form.fields}


def _attach(form, error: ValidationError) -> None:
    """Service errors (a race the form could not see) onto the form's fields."""
    for name, messages_ in error.message_dict.items():
        form.add_error(name if name in form.fields else None, messages_)


def _page(request, *, form, templates, course=None, can_manage=True, status=200):
    return render(request, "lens/course_setup.html", {
        "form": form, "templates": templates, "course": course, "can_manage": can_manage,
        "zones": _ZONES, **_summary(_form_data(form), course)}, status=status)


@login_required
def course_new(request):
    _may_create(request.user)
    data = request.POST if request.method == "POST" else None
    form = CourseSettingsForm(data)
    templates = template_approval_forms(data=data)
    if data is None:
        return _page(request, form=form, templates=templates)
    valid = [form.is_valid()] + [t.is_valid() for t in templates]
    if all(valid):
        try:
            course = course_setup_create(
                creator=request.user, values=form.values(),
                approvals=[a for t in templates if (a := t.approval())])
        except ValidationError as error:
            _attach(form, error)
        else:
            messages.success(request, f"{course.code} is ready, and you are its instructor. "
                                      "Next: add your TAs and students.")
            return redirect("course-settings", course.pk)
    return _page(request, form=form, templates=templates, status=400)


@login_required
def course_settings(request, course_id: int):
    actor = _staff(request, course_id, Action.VIEW_SETTINGS)
    course = actor.course
    can_manage = membership_may(actor=actor, action=Action.MANAGE_COURSE)
    data = request.POST if request.method == "POST" else None
    if data is not None and not can_manage:
        raise PermissionDenied("Only the instructor changes the course's settings.")
    form = CourseSettingsForm(data, course=course, read_only=not can_manage)
    templates = template_approval_forms(data=data, course=course, region=course.region,
                                        read_only=not can_manage)
    if data is None:
        return _page(request, form=form, templates=templates, course=course,
                     can_manage=can_manage)
    valid = [form.is_valid()] + [t.is_valid() for t in templates]
    if all(valid):
        try:
            course_setup_update(course=course, values=form.values(),
                                approvals=[a for t in templates if (a := t.approval())])
        except ValidationError as error:
            _attach(form, error)
        else:
            messages.success(request, f"Saved the settings of {course.code}.")
            return redirect("course-settings", course.pk)
    course.refresh_from_db()
    return _page(request, form=form, templates=templates, course=course, status=400)


@login_required
@require_POST
def course_summary(request, course_id: int | None = None):
    """The wizard's live summary (htmx), recomputed as the instructor types."""
    course = None
    if course_id is None:
        _may_create(request.user)
    else:
        course = _staff(request, course_id, Action.VIEW_SETTINGS).course
    return render(request, "lens/_course_summary.html", {
        "course": course, **_summary(request.POST, course)})


@login_required
def course_duplicate(request, course_id: int):
    actor = _staff(request, course_id, Action.MANAGE_COURSE)
    _may_create(request.user)
    source = actor.course
    form = CourseDuplicateForm(request.POST if request.method == "POST" else None,
                               initial={"title": source.title})
    status = 200
    if form.is_bound:
        if form.is_valid():
            try:
                course = course_setup_duplicate(source=source, creator=request.user,
                                                values=form.values())
            except ValidationError as error:
                _attach(form, error)
            else:
                messages.success(request, f"{course.code} is a copy of {source.code}: settings, "
                                          "approved templates and staff. Students and spending "
                                          "were not copied. Check the settings below.")
                return redirect("course-settings", course.pk)
        status = 400
    staff = (source.memberships.exclude(role=Membership.Role.STUDENT)
             .exclude(status=Membership.Status.REVOKED).order_by("role", "email"))
    return render(request, "lens/course_duplicate.html", {
        "source": source, "form": form, "staff": staff,
        "approved": source.approved_templates.select_related("template")
        .order_by("template__slug")}, status=status)
