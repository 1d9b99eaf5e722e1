"""Cost estimates for a template, in the terms users plan in: a session of a
few hours, a few sessions a week, a month of four such weeks."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
WEEKS_PER_MONTH = 4


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Estimate:
    usd_per_hour: Decimal
    session_hours: Decimal
    sessions_per_week: int
    per_session: Decimal
    per_week: Decimal
    per_month: Decimal
    per_day_running: Decimal
    remaining: Decimal | None

    @property
    def weeks_of_runway(self) -> Decimal | None:
        """How many weeks at this pace the remaining budget lasts."""
        if self.remaining is None or not self.per_week:
            return None
        return (self.remaining / self.per_week).quantize(Decimal("0.1"))

    @property
    def sessions_of_runway(self) -> int | None:
        if self.remaining is None or not self.per_session:
            return None
        return int(self.remaining // self.per_session)


def estimate_make(*, usd_per_hour: Decimal, session_hours: Decimal, sessions_per_week: int,
                  remaining: Decimal | None = None) -> Estimate:
    """Price a plan. A session is rounded to the cent first and the week and month
    are built from it, so the figures add up the way a person checks them."""
    per_session = cents(usd_per_hour * session_hours)
    per_week = per_session * sessions_per_week
    return Estimate(
        usd_per_hour=usd_per_hour, session_hours=session_hours,
        sessions_per_week=sessions_per_week, per_session=per_session, per_week=per_week,
        per_month=per_week * WEEKS_PER_MONTH, per_day_running=cents(usd_per_hour * 24),
        remaining=remaining)
