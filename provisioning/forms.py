from decimal import Decimal

from django import forms


class EstimateForm(forms.Form):
    hours = forms.DecimalField(label="Hours per session", min_value=Decimal("0.25"),
                               max_value=Decimal(168), decimal_places=2, initial=Decimal(6))
    sessions = forms.IntegerField(label="Sessions per week", min_value=1, max_value=21,
                                  initial=3)
