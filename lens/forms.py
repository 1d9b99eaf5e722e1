import uuid
from decimal import Decimal

from django import forms


class _Keyed(forms.Form):
    """A hidden one-time key: submitting the same form twice changes money once."""

    key = forms.CharField(widget=forms.HiddenInput, initial=lambda: uuid.uuid4().hex,
                          max_length=64)
    reason = forms.CharField(max_length=200, help_text="Recorded with the change.")


class CapForm(_Keyed):
    cap = forms.DecimalField(label="New cap ($)", min_value=Decimal(0),
                             max_value=Decimal(100000), decimal_places=2)
    field_order = ["cap", "reason", "key"]


class AdjustmentForm(_Keyed):
    amount = forms.DecimalField(
        label="Amount ($)", min_value=Decimal(-10000), max_value=Decimal(10000),
        decimal_places=2, help_text="Negative gives money back (a credit); positive charges.")
    field_order = ["amount", "reason", "key"]

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("An adjustment of $0 changes nothing.")
        return amount
