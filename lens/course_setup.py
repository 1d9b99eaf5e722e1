"""Course setup across apps: the settings (courses) and the approved templates
(provisioning) change together or not at all.

Lives in lens/ because courses may not import provisioning; the pages and the
API both call these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.db import transaction

from courses import setup
from courses.models import Course
from provisioning.approvals import TemplateApproval, course_templates_copy, course_templates_set


def course_setup_create(*, creator, values: Mapping[str, object],
                        approvals: Iterable[TemplateApproval]) -> Course:
    """A new course with its approved templates; the creator is its instructor."""
    with transaction.atomic():
        course = setup.course_create(creator=creator, values=values)
        course_templates_set(course=course, approvals=approvals)
    return course


def course_setup_update(*, course: Course, values: Mapping[str, object],
                        approvals: Iterable[TemplateApproval] | None) -> Course:
    """Change settings and, when `approvals` is given, replace the approved list."""
    with transaction.atomic():
        setup.course_update(course=course, values=values)
        if approvals is not None:
            course_templates_set(course=course, approvals=approvals)
    return course


def course_setup_duplicate(*, source: Course, creator,
                           values: Mapping[str, object]) -> Course:
    """Next term's course: settings, approved templates and staff; no students, no money."""
    with transaction.atomic():
        course = setup.course_duplicate(source=source, creator=creator, values=values)
        course_templates_copy(source=source, target=course)
    return course
