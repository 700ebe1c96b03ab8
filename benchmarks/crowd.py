"""A crowd of reviewers judging in the Arena, as light as a load generator can be: one
process, asyncio, one httpx client (its own cookie: its own signed-in page) per reviewer,
speaking Gradio's queue protocol as the browser does (POST queue/join, then the event's
messages on queue/data). load_arena.py starts it in its own process, so that the generator
and the app don't share a Python interpreter; it prints one JSON object.

    python benchmarks/crowd.py URL SPEC_JSON

SPEC_JSON: {"names": [...], "password": str, "mode": "session" | "free", "session": str,
"seconds": float, "think": [min_s, max_s], "seed": int, "prompts": [...]}.

Each reviewer opens the page (in a session, on the session: `/session_open`), then repeats a
round until the deadline: the next battle (`/session_next`) or a prompt (`/free_send`, the call
ends when both answers are complete), a random vote (in a session it answers with the progress
line too), then a think time drawn from `think` ([0, 0]: none, the stress case). Per call it
measures the latency the client saw, and the part of it spent waiting in the server's queue
(from the join to the server's "process_starts" message). Sign-ins and page loads happen
before the clock starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict

import httpx

VOTES = ["a", "b", "tie", "both_bad"]
SIGN_IN_AT_ONCE = 4  # each sign-in is an Argon2 check of 64 MiB on the server
TIMEOUT_S = 300


class Page:
    """One reviewer's page: a signed-in client, a session hash (the server keeps its
    gr.State under it) and the app's endpoints by API name."""

    def __init__(self, client: httpx.AsyncClient, api: str, endpoints: dict[str, int]):
        self.client = client
        self.api = api
        self.endpoints = endpoints
        self.session_hash = os.urandom(8).hex()

    async def call(self, api_name: str, data: list) -> tuple[list, float, float]:
        """One event, start to end: (its output, seconds in all, seconds queued)."""
        started = time.perf_counter()
        joined = await self.client.post(
            f"{self.api}/queue/join",
            json={"data": data, "fn_index": self.endpoints[api_name], "trigger_id": None,
                  "session_hash": self.session_hash, "event_data": None},
        )  # fmt: skip
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        queued = None
        params = {"session_hash": self.session_hash}
        async with self.client.stream("GET", f"{self.api}/queue/data", params=params) as stream:
            async for line in stream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") not in (event_id, None):
                    continue
                kind = message.get("msg")
                if kind == "process_starts":
                    queued = time.perf_counter() - started
                elif kind == "process_completed":
                    if not message.get("success"):
                        error = (message.get("output") or {}).get("error") or "failed"
                        raise RuntimeError(f"{api_name}: {error}")
                    total = time.perf_counter() - started
                    return message["output"]["data"], total, queued or 0.0
                elif kind == "close_stream":
                    break
        raise RuntimeError(f"{api_name}: the stream closed before the event completed")


async def open_page(url: str, name: str, password: str, session: str | None) -> Page:
    """Sign in and load the page; in session mode the page opens on the session, as the
    browser's does (the dropdown's change: the instructions, the progress line and the first
    battle). Gradio builds a page's state on its first event, so that cost falls here too."""
    client = httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=True)
    signed = await client.post(f"{url}/login", data={"username": name, "password": password})
    signed.raise_for_status()
    config = (await client.get(f"{url}/config")).json()
    api = url + config.get("api_prefix", "")
    endpoints = {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}
    page = Page(client, api, endpoints)
    if session is not None:
        await page.call("session_open", [session])
    return page


async def rounds(page: Page, name: str, spec: dict, deadline: float, out: dict) -> None:
    rng = random.Random(f"{spec['seed']}-{name}")
    low, high = spec["think"]
    mode = spec["mode"]
    # Reviewers don't arrive in step: each starts within one think time of the others.
    await asyncio.sleep(rng.uniform(0, high))
    while time.monotonic() < deadline:
        try:
            if mode == "session":
                shown, total, queued = await page.call("session_next", [spec["session"]])
                if "judged every battle" in json.dumps(shown):
                    out["exhausted"] += 1
                    return
                first = "next"
            else:
                prompt = rng.choice(spec["prompts"])
                shown, total, queued = await page.call("free_send", [None, prompt])
                first = "send"
            out["latency"][first].append((total, queued))
            vote = f"{mode[0]}_vote_{rng.choice(VOTES)}"
            _, total, queued = await page.call(vote, [None, None, None, ""])
            out["latency"]["vote"].append((total, queued))
            out["acked"][f"{name}|{mode}"] += 1
        except Exception as exc:  # counted by kind; the reviewer goes on after a pause
            out["errors"][f"{type(exc).__name__}: {' '.join(str(exc).split())[:80]}"] += 1
            await asyncio.sleep(0.5)
            continue
        await asyncio.sleep(rng.uniform(low, high))


async def main(url: str, spec: dict) -> dict:
    gate = asyncio.Semaphore(SIGN_IN_AT_ONCE)

    async def signed_in(name: str) -> Page:
        async with gate:
            session = spec["session"] if spec["mode"] == "session" else None
            return await open_page(url, name, spec["password"], session)

    pages = await asyncio.gather(*(signed_in(name) for name in spec["names"]))
    out = {"latency": defaultdict(list), "acked": Counter(), "errors": Counter(), "exhausted": 0}
    cpu_before, started = os.times(), time.monotonic()
    deadline = started + spec["seconds"]
    await asyncio.gather(*(rounds(page, name, spec, deadline, out)
                           for page, name in zip(pages, spec["names"], strict=True)))  # fmt: skip
    wall = time.monotonic() - started
    cpu_after = os.times()
    for page in pages:
        await page.client.aclose()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {"wall_s": wall, "cpu_s": cpu, "latency": out["latency"], "acked": out["acked"],
            "errors": out["errors"], "exhausted": out["exhausted"]}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1].rstrip("/"), json.loads(sys.argv[2])))))
