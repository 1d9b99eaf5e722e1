from decimal import Decimal

from billing.estimates import estimate_make


def test_the_estimate_reproduces_the_seed_numbers_to_the_cent():
    plan = estimate_make(usd_per_hour=Decimal("0.526"), session_hours=Decimal(6),
                         sessions_per_week=3, remaining=Decimal("500"))

    assert plan.per_session == Decimal("3.16")
    assert plan.per_week == Decimal("9.48")
    assert plan.per_month == Decimal("37.92")
    assert plan.per_day_running == Decimal("12.62")
    assert plan.weeks_of_runway == Decimal("52.7")  # "13 months of compute at this rate"
    assert plan.sessions_of_runway == 158


def test_without_a_budget_there_is_no_runway():
    plan = estimate_make(usd_per_hour=Decimal("0.0416"), session_hours=Decimal("1.5"),
                         sessions_per_week=2)

    assert (plan.per_session, plan.weeks_of_runway) == (Decimal("0.06"), None)
