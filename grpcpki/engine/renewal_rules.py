"""When a leaf is due for renewal: the one rule `grpcpki renew`, `renew --all` and `grpcpki apply`
read (re-exported by :mod:`grpcpki.engine.rotation`).

It needs three facts of a certificate, not a parsed one: its CA generation and its validity.
It imports neither cryptography nor SQLAlchemy, so `apply`'s no-op path
(:mod:`grpcpki.engine.applyplan`) applies it to plain rows read with the standard library.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

# Renew once two thirds of the lifetime has passed, as certbot and cert-manager do: a third
# of the lifetime (30 days for the 90-day default) is left to retry a failed renewal.
RENEW_AFTER_FRACTION = 2 / 3


class Dated(Protocol):
    """What the rule reads of a certificate: an inventory ``Record``, or a row of the fast plan."""

    @property
    def ca_generation(self) -> int | None: ...

    @property
    def not_before(self) -> datetime: ...

    @property
    def not_after(self) -> datetime: ...


def renewal_due(
    record: Dated, *, current_generation: int, within: timedelta | None = None, now: datetime | None = None
) -> tuple[bool, str]:
    """Is ``record`` due for renewal, and why (or why not)."""
    reason = due_reason(record, current_generation=current_generation, within=within, now=now)
    if reason is not None:
        return True, reason
    # date().isoformat() is %Y-%m-%d for the years 1000 to 9999 (strftime does not pad a year
    # below 1000) at a third of strftime's cost: `renew --all` words this for each of thousands of certificates that are not due.
    return False, (
        f"not due: valid until {record.not_after.date().isoformat()}, "
        f"renews after {renew_after(record).date().isoformat()}"
    )


def due_reason(
    record: Dated, *, current_generation: int, within: timedelta | None = None, now: datetime | None = None
) -> str | None:
    """Why ``record`` is due for renewal, or None if it is not (:func:`renewal_due` without
    the words for "not due", which a plan of thousands of certificates never prints)."""
    moment = now or datetime.now(UTC)
    generation = record.ca_generation or 1
    if generation != current_generation:
        return f"issued by CA generation {generation}, still chains to the old CA (current: {current_generation})"
    if record.not_after <= moment:
        return f"expired on {record.not_after:%Y-%m-%d %H:%M} UTC"
    if within is not None and record.not_after - moment <= within:
        return f"expires within {_days(within)} ({record.not_after:%Y-%m-%d})"
    renew_at = renew_after(record)
    if moment >= renew_at:
        return f"past two thirds of its lifetime (since {renew_at:%Y-%m-%d})"
    return None


def renew_after(record: Dated) -> datetime:
    return record.not_before + (record.not_after - record.not_before) * RENEW_AFTER_FRACTION


def _days(delta: timedelta) -> str:
    if delta % timedelta(days=1):
        return f"{delta.total_seconds() / 3600:g}h"
    return f"{delta.days}d"


__all__ = ["RENEW_AFTER_FRACTION", "Dated", "due_reason", "renew_after", "renewal_due"]
