"""Forms for messages and help requests: shape only; the rules live in
courses/inbox.py and courses/help_queue.py, whose errors go back on the fields."""

from django import forms

from courses.help_queue import SUMMARY_MAX, TEXT_MAX
from courses.inbox import BODY_MAX, SUBJECT_MAX


class _Form(forms.Form):
    def add_service_errors(self, errors: dict[str, str]) -> None:
        for name, message in errors.items():
            self.add_error(name if name in self.fields else None, message)


def _workspace_choices(workspaces: list[tuple[int, str]], none: str) -> list[tuple[str, str]]:
    return [("", none)] + [(str(pk), name) for pk, name in workspaces]


class MessageForm(_Form):
    subject = forms.CharField(max_length=SUBJECT_MAX)
    body = forms.CharField(label="Message", max_length=BODY_MAX,
                           widget=forms.Textarea(attrs={"rows": 7}))
    workspace = forms.TypedChoiceField(required=False, coerce=int, empty_value=None,
                                       label="About a workspace")

    def __init__(self, *args, workspaces: list[tuple[int, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["workspace"].choices = _workspace_choices(workspaces, "— none —")


class HelpAskForm(_Form):
    summary = forms.CharField(label="What is wrong?", max_length=SUMMARY_MAX,
                              widget=forms.TextInput(attrs={
                                  "placeholder": "e.g. my training crashes"}))
    details = forms.CharField(required=False, max_length=TEXT_MAX,
                              widget=forms.Textarea(attrs={
                                  "rows": 3, "placeholder": "What you tried, the error you see"}))
    workspace = forms.TypedChoiceField(required=False, coerce=int, empty_value=None,
                                       label="Workspace")

    def __init__(self, *args, workspaces: list[tuple[int, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["workspace"].choices = _workspace_choices(workspaces, "— not about one —")


class ResolveForm(_Form):
    note = forms.CharField(required=False, max_length=TEXT_MAX,
                           help_text="What fixed it; the student sees this.")
