"""Small wording helpers for messages shown to people."""


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """'1 row', '2 rows', '0 rows'."""
    return f"{count} {noun if count == 1 else (plural_noun or noun + 's')}"
