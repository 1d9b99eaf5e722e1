from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def usd(value) -> str:
    """Dollars to the cent, or to a hundredth of a cent below a dollar, where cents
    would round a small budget's movement away."""
    if value is None or value == "":
        return "—"
    amount = Decimal(value)
    places = 4 if 0 < abs(amount) < 1 else 2
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.{places}f}"
