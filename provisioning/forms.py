from decimal import Decimal

from django import forms

from billing.services import price_map
from provisioning.approvals import TemplateApproval, approval_errors
from provisioning.models import ApprovedTemplate, WorkspaceTemplate


class EstimateForm(forms.Form):
    hours = forms.DecimalField(label="Hours per session", min_value=Decimal("0.25"),
                               max_value=Decimal(168), decimal_places=2, initial=Decimal(6))
    sessions = forms.IntegerField(label="Sessions per week", min_value=1, max_value=21,
                                  initial=3)


class TemplateApprovalForm(forms.Form):
    """One template's line in a course's approved list (the wizard shows every template)."""

    approved = forms.BooleanField(required=False, label="Approve")
    requires_approval = forms.BooleanField(required=False, label="Needs approval")
    note = forms.CharField(required=False, max_length=200,
                           widget=forms.TextInput(attrs={"placeholder": "e.g. final project only"}))
    capacity = forms.IntegerField(required=False, widget=forms.NumberInput(
        attrs={"placeholder": "no limit", "min": 1}))

    def __init__(self, *args, template, usd_per_hour=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.template, self.usd_per_hour = template, usd_per_hour

    @property
    def usd_per_day(self):
        return None if self.usd_per_hour is None else self.usd_per_hour * 24

    def clean(self):
        data = super().clean()
        if data.get("approved"):
            for name, messages in approval_errors(values=data).items():
                for message in messages:
                    self.add_error(name, message)
        return data

    def approval(self):
        if not self.cleaned_data.get("approved"):
            return None
        return TemplateApproval(template=self.template,
                                requires_approval=self.cleaned_data["requires_approval"],
                                note=self.cleaned_data["note"],
                                capacity=self.cleaned_data["capacity"])


def template_approval_forms(*, data=None, course=None, region: str = "us-east-1",
                            read_only: bool = False) -> list[TemplateApprovalForm]:
    """A form per workspace template, filled from the course's approved list, with prices."""
    templates = list(WorkspaceTemplate.objects.order_by("slug"))
    current = ({a.template_id: a for a in ApprovedTemplate.objects.filter(course=course)}
               if course is not None else {})
    prices = price_map(keys={(region, t.instance_type) for t in templates})
    forms_ = []
    for t in templates:
        a = current.get(t.pk)
        initial = ({"approved": True, "requires_approval": a.requires_approval, "note": a.note,
                    "capacity": a.capacity} if a else {})
        price = prices.get((region, t.instance_type))
        form = TemplateApprovalForm(data, prefix=f"tpl-{t.pk}", initial=initial, template=t,
                                    usd_per_hour=price.usd_per_hour if price else None)
        if read_only:
            for f in form.fields.values():
                f.disabled = True
        forms_.append(form)
    return forms_


class KeyUploadForm(forms.Form):
    public_key = forms.CharField(
        label="Public key", max_length=16_000, strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70, "spellcheck": "false",
                                     "placeholder": "ssh-ed25519 AAAAC3Nza… you@laptop"}),
        help_text="The one line in your .pub file (cat ~/.ssh/id_ed25519.pub). "
                  "ed25519, or RSA of 2048 bits or more.")

    def clean_public_key(self):
        from provisioning.keys import KeyRefused, public_key_parse

        try:
            public_key_parse(text=self.cleaned_data["public_key"])
        except KeyRefused as refusal:
            raise forms.ValidationError(refusal.message) from None
        return self.cleaned_data["public_key"]
