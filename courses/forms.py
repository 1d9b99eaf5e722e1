"""Forms for the course wizard, the settings page and "duplicate for next term".

They only parse; the rules (and their messages) are courses.setup's.
"""

from __future__ import annotations

from django import forms

from courses import setup
from courses.models import Course

_DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
_MONEY = {"max_digits": 12, "decimal_places": 2}


class LocalDateTimeField(forms.DateTimeField):
    """A wall-clock date and time in the course's zone (not the server's): kept
    naive here, made aware by courses.setup with the course's time zone."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")

    def to_python(self, value):
        result = super().to_python(value)
        return result.replace(tzinfo=None) if result is not None else None

    def prepare_value(self, value):
        return value.replace(tzinfo=None) if hasattr(value, "tzinfo") and value.tzinfo \
            else value


def _required(name: str) -> dict:
    return {"error_messages": {"required": setup.REQUIRED[name]}}


class _SettingsRules(forms.Form):
    """Runs courses.setup's rules on what parsed, keeping each message on its field."""

    course: Course | None = None

    def clean(self):
        data = super().clean()
        values = {name: data[name] for name in setup.SETTINGS_FIELDS
                  if name in self.fields and name in data and name not in self.errors}
        for name, messages in setup.course_settings_errors(values=values,
                                                           course=self.course).items():
            for message in messages:
                if message not in self.errors.get(name, []):
                    self.add_error(name, message)
        return data


class CourseSettingsForm(_SettingsRules):
    # 1. The course
    code = forms.CharField(max_length=40, help_text="Short and unique, e.g. CS229-F26.",
                           **_required("code"))
    title = forms.CharField(max_length=200, **_required("title"))
    term_label = forms.CharField(max_length=60, required=False, label="Term",
                                 help_text="As students know it, e.g. Fall 2026.")
    kind = forms.ChoiceField(choices=Course.Kind.choices, initial=Course.Kind.CLASS)
    # 2. The term
    time_zone = forms.CharField(max_length=64, initial="America/New_York",
                                help_text="Dates and times in this course are in this zone.",
                                widget=forms.TextInput(attrs={"list": "zones",
                                                              "autocomplete": "off"}),
                                **_required("time_zone"))
    start_date = forms.DateField(label="First day", widget=_DATE, **_required("start_date"))
    end_date = forms.DateField(label="Last day", widget=_DATE,
                               help_text="The term ends at 23:59:59 on this day, local time.",
                               **_required("end_date"))
    # 3. Money
    budget_total = forms.DecimalField(label="Course budget ($)", initial=0,
                                      help_text="All spending in the course; 0 = no course "
                                                "total, only per-student caps.", **_MONEY)
    default_member_budget = forms.DecimalField(label="Default per-student budget ($)",
                                               initial=0, **_MONEY)
    expected_students = forms.IntegerField(label="Expected students", required=False,
                                           help_text="For the summary only; the roster "
                                                     "decides who is in.")
    # 4. Limits
    max_concurrent_workspaces = forms.IntegerField(
        label="Workspaces running at once, per student", initial=1, help_text="0 = no limit.")
    max_daily_cost = forms.DecimalField(label="Most a student may spend in a day ($)",
                                        required=False, help_text="Empty = no daily cap.",
                                        **_MONEY)
    idle_stop_minutes = forms.IntegerField(label="Stop idle workspaces after (minutes)",
                                           required=False,
                                           help_text="Empty = never stop for idleness.")
    # 5. When the term ends
    term_end_stop = forms.BooleanField(required=False, initial=True,
                                       label="Stop every running workspace")
    term_end_archive = forms.BooleanField(required=False, initial=True,
                                          label="Archive students' workspaces")
    term_end_revoke = forms.BooleanField(required=False, initial=True,
                                         label="Revoke students' access")
    term_end_report = forms.BooleanField(required=False, initial=True,
                                         label="Email the final cost report to staff")
    retention_days = forms.IntegerField(label="Keep archived work for (days)", initial=365)
    # 6. Requests
    head_ta_may_approve = forms.BooleanField(
        required=False, initial=False, label="Head TAs may approve or deny requests",
        help_text="Students ask for templates that need approval and for more budget; the "
                  "instructor always decides.")
    # 7. Workshops only (kind = workshop); ignored for other kinds
    workshop_start = LocalDateTimeField(label="Workshop starts", required=False,
                                        help_text="Local date and time; joining opens then.")
    workshop_duration_minutes = forms.IntegerField(
        label="Duration (minutes)", required=False,
        help_text="e.g. 180 for three hours; joining closes at the end.")
    workshop_extension_minutes = forms.IntegerField(
        label="Extension after the end (minutes)", required=False,
        help_text="Participants keep access this long after the end; empty = none. "
                  "Then their access is revoked and their workspaces stop.")
    workshop_max_participants = forms.IntegerField(label="At most this many participants",
                                                   required=False, help_text="Empty = no limit.")

    SECTIONS = [
        ("The course", ["code", "title", "term_label", "kind"]),
        ("The term", ["time_zone", "start_date", "end_date"]),
        ("Budget", ["budget_total", "default_member_budget", "expected_students"]),
        ("Limits", ["max_concurrent_workspaces", "max_daily_cost", "idle_stop_minutes"]),
        ("When the term ends", ["term_end_stop", "term_end_archive", "term_end_revoke",
                                "term_end_report", "retention_days"]),
        ("Requests", ["head_ta_may_approve"]),
        ("Workshop (only for kind “Workshop”)", list(setup.WORKSHOP_FIELDS)),
    ]

    def __init__(self, *args, course: Course | None = None, read_only: bool = False,
                 **kwargs):
        if course is not None and "initial" not in kwargs:
            kwargs["initial"] = setup.course_settings_of(course)
        super().__init__(*args, **kwargs)
        self.course = course
        if read_only:
            for f in self.fields.values():
                f.disabled = True

    def sections(self):
        return [(title, [self[name] for name in names]) for title, names in self.SECTIONS]

    def values(self) -> dict:
        return {name: self.cleaned_data[name] for name in setup.SETTINGS_FIELDS}


class CourseDuplicateForm(_SettingsRules):
    """What changes from one term to the next; everything else is copied."""

    code = forms.CharField(max_length=40, label="New code", **_required("code"))
    title = forms.CharField(max_length=200, **_required("title"))
    term_label = forms.CharField(max_length=60, required=False, label="Term")
    start_date = forms.DateField(label="First day", widget=_DATE, **_required("start_date"))
    end_date = forms.DateField(label="Last day", widget=_DATE,
                               help_text="The term ends at 23:59:59 on this day, "
                                         "in the course's time zone.",
                               **_required("end_date"))

    def values(self) -> dict:
        return dict(self.cleaned_data)
