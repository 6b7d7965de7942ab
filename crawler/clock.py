"""The one way the crawler writes a moment: ISO 8601 UTC to the millisecond, with a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    """`moment` as `2026-01-01T00:00:00.000Z` (a naive one is taken to be UTC already)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def utc_iso(epoch: float) -> str:
    """Epoch seconds as `iso` writes them."""
    return iso(datetime.fromtimestamp(epoch, UTC))
