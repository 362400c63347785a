"""Timestamps as stored: UTC ISO-8601 strings ending in 'Z', which sort in time order."""

from datetime import datetime, timezone


def utc_now() -> str:
    """The current time with milliseconds: ``2025-05-01T12:00:00.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
