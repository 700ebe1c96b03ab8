"""Calling a running Gradio app's events over raw HTTP, the way the browser does
(`/gradio_api/queue/join`, then the event stream), so tests can reach every event, including
those hidden from the API page and refused by gradio_client (`api_name=False`)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class EventResult:
    success: bool
    output: dict[str, Any]  # {"data": [...]} on success, {"error": "..."} on failure

    @property
    def error(self) -> str:
        return str(self.output.get("error") or "")


def signed_in_client(url: str, name: str | None = None, password: str | None = None,
                     **kwargs: Any) -> httpx.Client:  # fmt: skip
    """An HTTP client for the app, signed in with Gradio's password form when a name is given
    (Gradio sets one Secure and one plain cookie; the plain one works over http)."""
    client = httpx.Client(base_url=url, timeout=120, **kwargs)
    if name is not None:
        response = client.post("login", data={"username": name, "password": password})
        assert response.status_code == 200, f"sign-in of {name} failed: {response.text}"
    return client


def dependencies(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("config")
    response.raise_for_status()
    return response.json()["dependencies"]


def call_event(
    client: httpx.Client,
    fn_index: int,
    data: list[Any],
    event_data: Any = None,
    session_hash: str | None = None,
) -> EventResult:
    """Run event `fn_index` with `data` (one value per input, None for a gr.State: Gradio keeps
    those on the server) and wait for it to finish. `event_data` stands for what the browser
    sends with a select event; calls with the same `session_hash` share their gr.State, like
    one open page."""
    session_hash = session_hash or uuid.uuid4().hex[:12]
    joined = client.post(
        "gradio_api/queue/join",
        json={"data": data, "fn_index": fn_index, "session_hash": session_hash,
              "event_data": event_data, "trigger_id": None},
    )  # fmt: skip
    if joined.status_code != 200:
        return EventResult(False, {"error": f"HTTP {joined.status_code}: {joined.text}"})
    with client.stream("GET", "gradio_api/queue/data", params={"session_hash": session_hash}) as s:
        for line in s.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed":
                return EventResult(bool(message.get("success")), message.get("output") or {})
    raise AssertionError(f"event {fn_index} ended without a result")
