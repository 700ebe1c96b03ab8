"""Who is asking, and may they? The per-handler guard of every UI event.

Until user accounts exist (they come with the users feature), the app runs in single-user
mode: it binds to loopback only and every request acts as the local admin. The guard is
already called by every handler, so adding accounts changes one function, not the handlers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftapp.errors import Forbidden
from ftapp.records import Role

LOCAL_ADMIN = "admin"


@dataclass(frozen=True)
class User:
    name: str
    role: Role


def resolve_user(username: str | None) -> User:
    """The user behind a request (Gradio's signed-in name, or None without sign-in)."""
    if username is None:
        return User(LOCAL_ADMIN, Role.ADMIN)
    return User(username, Role.ADMIN)


def require_role(user: User, role: Role) -> User:
    if role == Role.ADMIN and user.role != Role.ADMIN:
        raise Forbidden(f"{user.name} is a {user.role}; this needs an admin")
    return user
