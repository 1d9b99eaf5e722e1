"""Request and decision forms: shape only; the rules are courses/approvals.py's,
whose errors are put back on the fields they name."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from courses.approvals import NOTE_MAX, REASON_MAX, RequestableTemplate
from courses.forms import LocalDateTimeField
from courses.models import Approval


class _ServiceErrors(forms.Form):
    def add_service_errors(self, error: ValidationError) -> None:
        for name, messages in error.message_dict.items():
            for message in messages:
                self.add_error(name if name in self.fields else None, message)


class ApprovalRequestForm(_ServiceErrors):
    kind = forms.ChoiceField(choices=[(Approval.Kind.TEMPLATE, "A template that needs approval"),
                                      (Approval.Kind.BUDGET, "More budget")],
                             initial=Approval.Kind.TEMPLATE,
                             widget=forms.RadioSelect, label="I need")
    template_slug = forms.ChoiceField(required=False, label="Template")
    amount = forms.DecimalField(required=False, max_digits=12, decimal_places=2,
                                label="More budget ($)", help_text="On top of your cap.")
    reason = forms.CharField(max_length=REASON_MAX, widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="What it is for, e.g. “final project: training a CNN "
                                       "on 40k images”.",
                             error_messages={"required": "Say why you need it; staff decide "
                                                         "on your reason."})

    def __init__(self, *args, templates: list[RequestableTemplate], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template_slug"].choices = [("", "— choose —")] + [
            (t.slug, t.name) for t in templates]
        if not templates:
            self.fields["kind"].initial = Approval.Kind.BUDGET


class ApprovalDecideForm(_ServiceErrors):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    expires_at = LocalDateTimeField(required=False, label="Until",
                                    help_text="Local time in the course's zone; empty = no "
                                              "expiry.")
    note = forms.CharField(required=False, max_length=NOTE_MAX, label="Note to the student")
