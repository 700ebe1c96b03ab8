"""UTC timestamps as ISO-8601 strings, the one format the database stores (`*_at` columns)."""

from datetime import UTC, datetime


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
