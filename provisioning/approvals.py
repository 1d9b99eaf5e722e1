"""Which templates a course approves: set the list, copy it to another course.

Called by lens/ next to courses.setup when a course is created, changed or
duplicated; launch reads the result through services.course_template_offers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from courses.models import Course
from provisioning.models import ApprovedTemplate, WorkspaceTemplate

NOTE_MAX = ApprovedTemplate._meta.get_field("note").max_length


@dataclass(frozen=True)
class TemplateApproval:
    """One line of a course's approved list, as the instructor gives it."""

    template: WorkspaceTemplate
    requires_approval: bool = False
    note: str = ""
    capacity: int | None = None


def approval_errors(*, values: Mapping[str, object]) -> dict[str, list[str]]:
    """Field → messages for one approved-template line (shared by page and API)."""
    errors: dict[str, list[str]] = {}
    capacity = values.get("capacity")
    if capacity is not None and capacity < 1:
        errors["capacity"] = ["At least 1 slot; leave it empty for no limit."]
    if len(values.get("note") or "") > NOTE_MAX:
        errors["note"] = [f"At most {NOTE_MAX} characters."]
    return errors


def course_templates_set(*, course: Course,
                         approvals: Iterable[TemplateApproval]) -> list[ApprovedTemplate]:
    """Make the course's approved list exactly `approvals`.

    Lines not given are removed (workspaces already made from them keep
    running; only new launches are refused). Raises ValidationError keyed by
    template slug when a line breaks a rule or a template appears twice.
    """
    approvals = list(approvals)
    errors: dict[str, list[str]] = {}
    seen: set[int] = set()
    for line in approvals:
        if line.template.pk in seen:
            errors.setdefault(line.template.slug, []).append("Listed twice.")
        seen.add(line.template.pk)
        for messages in approval_errors(values=line.__dict__).values():
            errors.setdefault(line.template.slug, []).extend(messages)
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        ApprovedTemplate.objects.filter(course=course).exclude(template_id__in=seen).delete()
        for line in approvals:
            ApprovedTemplate.objects.update_or_create(
                course=course, template=line.template,
                defaults={"requires_approval": line.requires_approval,
                          "note": line.note.strip(), "capacity": line.capacity})
    return course_templates_of(course=course)


def course_templates_of(*, course: Course) -> list[ApprovedTemplate]:
    return list(ApprovedTemplate.objects.filter(course=course).select_related("template")
                .order_by("template__slug"))


def course_templates_copy(*, source: Course, target: Course) -> list[ApprovedTemplate]:
    """Give `target` the same approved list as `source` (for "duplicate for next term")."""
    return course_templates_set(course=target, approvals=[
        TemplateApproval(template=a.template, requires_approval=a.requires_approval,
                         note=a.note, capacity=a.capacity)
        for a in course_templates_of(course=source)])
