"""UTC timestamps as ISO-8601 strings, the one format the database stores (`*_at` columns)."""

from datetime import UTC, datetime


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def seconds_since(timestamp: str, now: datetime | None = None) -> float:
    """How long ago a stored `*_at` timestamp was, in seconds."""
    return ((now or datetime.now(UTC)) - datetime.fromisoformat(timestamp)).total_seconds()
