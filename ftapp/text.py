"""Small wording helpers for messages shown to people."""


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """'1 row', '2 rows', '0 rows'."""
    return f"{count} {noun if count == 1 else (plural_noun or noun + 's')}"


def one_line(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
