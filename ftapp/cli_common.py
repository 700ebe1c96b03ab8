"""What every `ftapp` command shares: the services, who is acting, printing results."""

from __future__ import annotations

import getpass
import json
from typing import Any


def services():
    from ftapp.services import Services

    return Services.from_env()


def user() -> str:
    return f"cli:{getpass.getuser()}"


def print_result(value: Any, as_json: bool, text: str) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str) if as_json else text)
