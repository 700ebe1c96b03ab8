"""Arena under load: many reviewers at once against the real app, through gradio_client.

    .venv/bin/python benchmarks/load_arena.py [--reviewers 50] [--seconds 60]
        [--free-seconds 60] [--baseline-seconds 20] [--backend vllm|echo]
        [--free-max-tokens 64] [--session-prompts 600]

It starts `python app.py` (through benchmarks/running_app.py, as tests/live_app.py does) on a
fresh temporary FTAPP_HOME with the bundled model linked, password users (one reviewer for the
baseline, --reviewers for the load; Argon2 hashing and sign-in happen before any clock starts),
two contestants and one open evaluation session whose answers were pre-generated before the
app started (with the echo backend: judging a session battle never touches the engine, so its
text doesn't matter). Then four timed phases, each reviewer a thread with its own signed-in
Client (its own page):

1. baseline, session: one reviewer alone, `/session_next` then a random `/s_vote_*`, again
   and again for --baseline-seconds;
2. baseline, free: the same reviewer, `/free_send` (both answers streamed from the engine,
   the call returns when they are complete) then a random `/f_vote_*`;
3. load, session: every reviewer at once, the same actions, for --seconds;
4. load, free: every reviewer at once, for --free-seconds.

No new round starts after a phase's deadline; rounds in flight finish (a free battle sent is
still voted on). Latencies are client-side, queue waits included. Afterwards the votes the API
acknowledged (a vote call that returned without error) are compared, reviewer by reviewer,
with the rows of `votes`. Nothing is asserted on speed: the exit status is 0 however slow,
1 only if an acknowledged vote is missing from the database (data loss). Loopback only.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from running_app import (
    CALL_TIMEOUT_S,
    REPO,
    STOP_GRACE_S,
    AppFailed,
    app_env,
    error_kind,
    free_port,
    link_models,
    log_tail,
    prepare_arena,
    sign_in,
    start_app,
    stop_app,
    wait_until_up,
)

SESSION = "load"
VOTES = ["a", "b", "tie", "both_bad"]
MAX_ROUNDS = 100_000  # per reviewer and phase: a bound on the loop besides its deadline
JOIN_GRACE_S = 600  # how long a phase waits for the rounds in flight at its deadline
FREE_PROMPTS = [
    "Name three fruits that are red.",
    "What is the capital of France?",
    "Give me a tip for sleeping better.",
    "Write a haiku about rain.",
    "Explain what a list is in Python.",
    "How many legs does a spider have?",
    "Suggest a name for a grey cat.",
    "Translate 'good morning' into Spanish.",
]


@dataclass
class Phase:
    """What one phase measured; the threads add to it under its lock."""

    name: str
    reviewers: int
    wall_s: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)  # (action, kind) -> count
    exhausted: int = 0  # reviewers whose session queue ran out
    stuck: int = 0  # reviewer threads still running after the grace period
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, action: str, seconds: float) -> None:
        with self.lock:
            self.latencies[action].append(seconds)

    def error(self, action: str, kind: str) -> None:
        with self.lock:
            self.errors[(action, kind)] += 1


# Votes acknowledged by the API: (reviewer, "session" | "free") -> count, all phases.
ACKED: Counter = Counter()
ACKED_LOCK = threading.Lock()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reviewers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60, help="session phase under load")
    parser.add_argument("--free-seconds", type=float, default=60, help="free phase under load")
    parser.add_argument("--baseline-seconds", type=float, default=20, help="each solo phase")
    parser.add_argument("--backend", choices=["vllm", "echo"], default="vllm")
    parser.add_argument("--free-max-tokens", type=int, default=64, help="per answer")
    parser.add_argument("--session-prompts", type=int, default=600)
    parser.add_argument("--vllm-timeout", type=float, default=300, help="start-up wait, s")
    parser.add_argument("--models-dir", type=Path, default=REPO / "ftapp-data" / "models")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


# --- set-up, before any clock ----------------------------------------------------------------


def prepare_home(home: Path, models_dir: Path, names: list[str], prompts: int) -> str:
    """The home the app will start on; returns the reviewers' password."""
    from ftapp.arena.sessions import MAX_OVERLAP
    from ftapp.auth import add_user
    from ftapp.records import Role
    from ftapp.services import Services
    from ftapp.settings import Settings
    from ftapp.store.db import open_db

    link_models(home, models_dir)
    settings = Settings(home=home, backend="echo")
    settings.ensure_dirs()
    open_db(settings.db_path).close()
    services = Services(settings)
    password = secrets.token_urlsafe(12)
    with services.db() as db:
        add_user(db, "bench-admin", Role.ADMIN, password, "bench")
        for name in names:
            add_user(db, name, Role.REVIEWER, password, "bench")
    prepare_arena(services, SESSION, prompts, min(len(names), MAX_OVERLAP), "bench-admin")
    return password


def start(home: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str, Path]:
    """`python app.py` on `home`, without a worker; returns once it (and vLLM) answer."""
    port = free_port()
    settings = {"FTAPP_BACKEND": args.backend, "FTAPP_WORKER": "0",
                "FTAPP_ARENA_MAX_NEW_TOKENS": str(args.free_max_tokens)}  # fmt: skip
    if args.backend == "vllm":
        settings["FTAPP_VLLM_PORT"] = str(free_port())
    env = app_env(home, port, **settings)
    log_path = home.parent / "app.log"
    process = start_app(env, log_path)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, process, log_path, 120)
        if args.backend == "vllm":
            health = f"http://127.0.0.1:{env['FTAPP_VLLM_PORT']}/health"
            wait_until_up(health, process, log_path, args.vllm_timeout)
    except AppFailed as failed:
        stop_app(process, STOP_GRACE_S)
        raise SystemExit(str(failed)) from None
    return process, url, log_path


def open_arena(url: str, name: str, password: str, tls: ssl.SSLContext):
    """A signed-in page of the Arena, sessions listed (what the page does on load)."""
    client = sign_in(url, name, password, tls, CALL_TIMEOUT_S)
    client.predict(None, api_name="/arena_sessions")
    return client


# --- what a reviewer does ---------------------------------------------------------------------


def timed(phase: Phase, action: str, client, *inputs, api_name: str):
    """One API call: its latency is recorded if it succeeded, its error kind if not."""
    started = time.perf_counter()
    try:
        result = client.predict(*inputs, api_name=api_name)
    except Exception as exc:  # counted by kind: the run goes on
        phase.error(action, error_kind(exc))
        return None, False
    phase.add(action, time.perf_counter() - started)
    return result, True


def acknowledge(name: str, mode: str) -> None:
    with ACKED_LOCK:
        ACKED[(name, mode)] += 1


def session_rounds(client, name: str, phase: Phase, deadline: float, rng: random.Random) -> None:
    for _ in range(MAX_ROUNDS):
        if time.monotonic() >= deadline:
            return
        shown, ok = timed(phase, "next", client, SESSION, api_name="/session_next")
        if not ok:
            time.sleep(0.2)  # an error is not a reason to hammer the server
            continue
        if "judged every battle" in str(shown[4]):
            with phase.lock:
                phase.exhausted += 1
            return
        vote = f"/s_vote_{rng.choice(VOTES)}"
        _, ok = timed(phase, "vote", client, None, None, "", api_name=vote)
        if ok:
            acknowledge(name, "session")


def free_rounds(client, name: str, phase: Phase, deadline: float, rng: random.Random) -> None:
    for _ in range(MAX_ROUNDS):
        if time.monotonic() >= deadline:
            return
        prompt = rng.choice(FREE_PROMPTS)
        shown, ok = timed(phase, "send", client, prompt, api_name="/free_send")
        if not ok:
            time.sleep(0.2)
            continue
        if shown[1]:  # the status line: "Generation failed." (engine error, nothing to judge)
            phase.error("send", f"battle not judgeable: {shown[1]}")
            continue
        vote = f"/f_vote_{rng.choice(VOTES)}"
        _, ok = timed(phase, "vote", client, None, None, "", api_name=vote)
        if ok:
            acknowledge(name, "free")


def run_phase(name: str, rounds, clients: dict, seconds: float, seed: int) -> Phase:
    phase = Phase(name, len(clients))
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=rounds, daemon=True,
                         args=(client, user, phase, deadline, random.Random(f"{seed}-{user}")))
        for user, client in clients.items()
    ]  # fmt: skip
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline + JOIN_GRACE_S - time.monotonic()))
    phase.wall_s = time.monotonic() - started
    phase.stuck = sum(thread.is_alive() for thread in threads)
    return phase


# --- the report -------------------------------------------------------------------------------


def quantiles(values: list[float]) -> tuple[float, float, float] | None:
    """p50, p95, p99 in milliseconds (nearest rank), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    pick = [
        ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] for q in (0.5, 0.95, 0.99)
    ]
    return pick[0] * 1000, pick[1] * 1000, pick[2] * 1000


def print_phases(phases: list[Phase]) -> None:
    print("\n| phase | reviewers | wall s | action | calls | per s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for phase in phases:
        for action, values in sorted(phase.latencies.items()):
            p50, p95, p99 = quantiles(values)
            rate = len(values) / phase.wall_s if phase.wall_s else 0.0
            print(f"| {phase.name} | {phase.reviewers} | {phase.wall_s:.1f} | {action} | "
                  f"{len(values)} | {rate:.1f} | {p50:.0f} | {p95:.0f} | {p99:.0f} |")  # fmt: skip
        if phase.exhausted or phase.stuck:
            print(f"| {phase.name} | | | queue ran out: {phase.exhausted}, threads still "
                  f"running: {phase.stuck} | | | | | |")  # fmt: skip


def print_ratios(pairs: list[tuple[Phase, Phase]]) -> None:
    print("\n| under load ÷ alone | p50 | p95 | p99 |")
    print("|---|---|---|---|")
    for alone, loaded in pairs:
        for action in sorted(set(alone.latencies) & set(loaded.latencies)):
            base, load = quantiles(alone.latencies[action]), quantiles(loaded.latencies[action])
            cells = " | ".join(f"{b and x / b:.1f}x" for b, x in zip(base, load, strict=True))
            print(f"| {loaded.name} {action} | {cells} |")


def print_errors(phases: list[Phase]) -> None:
    rows = [(p.name, action, kind, n) for p in phases for (action, kind), n in p.errors.items()]
    print(f"\nErrors: {sum(r[3] for r in rows)}")
    for name, action, kind, n in sorted(rows):
        print(f"  {name} {action}: {n} × {kind}")


def check_votes(db_path: Path) -> int:
    """Acknowledged votes against rows in `votes`; returns how many acknowledged are missing."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        rows = conn.execute(
            "SELECT v.reviewer, CASE WHEN b.session_id IS NULL THEN 'free' ELSE 'session' END, "
            "COUNT(*) FROM votes v JOIN battles b ON b.id = v.battle_id GROUP BY 1, 2"
        ).fetchall()
    finally:
        conn.close()
    stored = Counter({(reviewer, mode): n for reviewer, mode, n in rows})
    print("\n| votes | acknowledged by the API | rows in `votes` | missing | not acknowledged |")
    print("|---|---|---|---|---|")
    missing_total = 0
    for mode in ("session", "free"):
        keys = {k for k in (*ACKED, *stored) if k[1] == mode}
        acked = sum(ACKED[k] for k in keys)
        in_db = sum(stored[k] for k in keys)
        missing = sum(max(0, ACKED[k] - stored[k]) for k in keys)
        extra = sum(max(0, stored[k] - ACKED[k]) for k in keys)
        missing_total += missing
        print(f"| {mode} | {acked} | {in_db} | {missing} | {extra} |")
    return missing_total


def main() -> int:
    args = parse_args()
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    names = [f"r{i:02d}" for i in range(1, args.reviewers + 1)]
    solo = "solo"
    with tempfile.TemporaryDirectory(prefix="ftapp-load-") as tmp:
        home = Path(tmp) / "home"
        print(f"preparing {home}: {args.reviewers + 1} users, {args.session_prompts} prompts")
        password = prepare_home(home, args.models_dir, [solo, *names], args.session_prompts)
        print(f"starting the app ({args.backend} backend)")
        process, url, log_path = start(home, args)
        try:
            phases = measure(args, url, password, solo, names)
        finally:
            stop_app(process, STOP_GRACE_S)
        print_phases(phases)
        print_ratios([(phases[0], phases[2]), (phases[1], phases[3])])
        print_errors(phases)
        missing = check_votes(home / "ftapp.db")
        print(f"\n{args.backend} backend, {os.cpu_count()} CPUs")
        if any(p.errors for p in phases):
            print(f"the app's log ends with:\n{log_tail(log_path, 2000)}")
    if missing:
        print(f"DATA LOSS: {missing} acknowledged votes are not in the database")
        return 1
    return 0


def measure(args: argparse.Namespace, url: str, password: str, solo: str, names: list[str]):
    tls = ssl.create_default_context()
    solo_client = {solo: open_arena(url, solo, password, tls)}
    # One untimed round of each kind; the engine may need a moment after its health check.
    for rounds in (session_rounds, free_rounds):
        for _ in range(30):
            warm_up = Phase("warm-up", 1)
            rounds(solo_client[solo], solo, warm_up, time.monotonic() + 0.5, random.Random(0))
            if not warm_up.errors:
                break
            time.sleep(2)
        else:
            raise SystemExit(f"the warm-up round failed: {dict(warm_up.errors)}")
    print(f"baseline: 1 reviewer, {args.baseline_seconds:.0f} s a phase")
    phases = [
        run_phase("alone, session", session_rounds, solo_client, args.baseline_seconds, args.seed),
        run_phase("alone, free", free_rounds, solo_client, args.baseline_seconds, args.seed),
    ]
    print(f"signing in {len(names)} reviewers")
    clients: dict = {}
    lock = threading.Lock()

    def open_page(name: str) -> None:
        client = open_arena(url, name, password, tls)
        with lock:
            clients[name] = client

    # A few at a time: each sign-in is an Argon2 check of 64 MiB on the server.
    for start in range(0, len(names), 4):
        batch = [threading.Thread(target=open_page, args=(n,)) for n in names[start : start + 4]]
        for thread in batch:
            thread.start()
        for thread in batch:
            thread.join(CALL_TIMEOUT_S)
    print(f"load: {len(clients)} reviewers, {args.seconds:.0f} s sessions, "
          f"{args.free_seconds:.0f} s free battles")  # fmt: skip
    phases.append(run_phase("load, session", session_rounds, clients, args.seconds, args.seed))
    phases.append(run_phase("load, free", free_rounds, clients, args.free_seconds, args.seed))
    return phases


if __name__ == "__main__":
    sys.exit(main())
