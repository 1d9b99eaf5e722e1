"""Roster forms: shape only; the rules live in courses/roster.py, whose errors
are put back on the fields they name."""

from django import forms

from courses.models import Membership, Section
from courses.roster import NAME_MAX, SECTION_MAX, RosterError, roles_assignable


class _RosterForm(forms.Form):
    def add_roster_errors(self, error: RosterError) -> None:
        for name, message in error.errors.items():
            self.add_error(name if name in self.fields else None, message)


class MemberAddForm(_RosterForm):
    email = forms.CharField(max_length=254, widget=forms.EmailInput)
    name = forms.CharField(max_length=NAME_MAX, required=False)
    section = forms.ChoiceField(required=False)
    role = forms.ChoiceField(initial=Membership.Role.STUDENT)

    def __init__(self, *args, actor: Membership, sections: list[Section], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["section"].choices = [("", "— none —")] + [(s.name, s.name) for s in sections]
        allowed = roles_assignable(actor)
        self.fields["role"].choices = [(v, label) for v, label in Membership.Role.choices
                                       if v in allowed]


class SectionForm(_RosterForm):
    name = forms.CharField(label="New section", max_length=SECTION_MAX,
                           help_text='For example "A" or "Lab 2".')


class ImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text="Header: email,name,section and "
                                                       "optionally role.")
