"""Faults: kill -9, at random moments and under load, the four processes of a running ftapp --
the training child, the worker, the vLLM server and the web app -- restart only what the
README tells a user to restart, and check that the product recovers by itself and loses
nothing.

    .venv/bin/python benchmarks/faults.py [--kills-per-target 3] [--seed 0] [--gap 20 60]
        [--recovery-timeout 420] [--train-steps 24] [--json report.json] [--home PATH]

It prepares a fresh FTAPP_HOME (a temporary one, or --home, kept) with the bundled model
linked, password users (an admin, two reviewers, and a reviewer for the checks' battles), a
dataset imported, labelled, split and frozen through the core to train on, a dataset of
pending examples to label, and the Arena of load_arena.py (an open evaluation session whose
answers were generated before the start). Then it starts `python app.py` as the README does
(benchmarks/running_app.py): the default backend, its own vLLM CPU server, and the worker
beside it. Load runs the whole time, each a thread with its own gradio_client Client that
signs in again when a call fails (after an app restart): the reviewers judge the session and
now and then a free battle, the admin labels examples (/review_accept, /review_reject) and
queues small training jobs on the bundled model one after another, SFT and DPO by turns (a
checkpoint every --save-steps steps, so a resume has something to resume from), and puts the
first trained adapter in the free-battle pool (so adapters are loaded into vLLM again after
its restarts).

A seeded schedule kills each target --kills-per-target times, in random order, with SIGKILL.
Each kill waits a time drawn uniformly from --gap after the product was last whole; if the
target doesn't exist then (the training child only exists while a job trains), it is killed
at a moment drawn from the 20 s after it next appears. Targets are found by their process
(psutil): the app is `python app.py`, the worker its child running `ftapp.cli worker`, vLLM
its child running vLLM's server, the training child a process of `ftapp.training.child`;
only processes whose FTAPP_HOME is this run's count. After a kill of the app, `python app.py`
is started again; after the others, nothing is done. A kill is survived when, within
--recovery-timeout (a guard against hanging, not a speed check), the product is whole again:
the app answers, a worker runs beside it, every unfinished job trains in a live training
process, a free battle is answered by vLLM (voted on like any other), and after an app kill
nothing the killed app had started is left running.

At the end no more jobs are queued and every job must end (succeeded, resumed or not, or
failed with a reason) within --end-timeout; a last free battle must be answered; the app is
stopped and must leave no process behind. Then the database is compared with what the API
acknowledged: every vote (per reviewer, the battle's prompt and the choice) and every label
(per admin, the example and its status) must be stored, and every job queued must exist. The
report gives kills tried and survived per target, votes and labels acknowledged and stored,
and jobs by outcome; --json PATH writes it as JSON. Exit status 0 only if everything held.
Every process of the run is killed at the end, also after Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import secrets
import signal
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
from random import Random

import psutil
from running_app import (
    REPO,
    STOP_GRACE_S,
    answers,
    app_env,
    error_kind,
    free_port,
    link_models,
    log_tail,
    prepare_arena,
    sign_in,
    start_app,
    stop_app,
)

TARGETS = ("child", "worker", "vllm", "app")
ADMIN = "admin"
REVIEWERS = ("ann", "bob")
PROBE = "probe"  # the reviewer whose free battles check that vLLM answers
SESSION = "faults"
TRAIN_DATASET = "faults-train"
PAIRS_DATASET = "faults-pairs"  # every other job is DPO on these pairs
INBOX = "inbox"  # pending examples the admin labels
VOTES = ("a", "b", "tie", "both_bad")
UNFINISHED = ("queued", "running", "interrupted")
FREE_PROMPTS = [
    "Name three fruits that are red.",
    "What is the capital of France?",
    "Give me a tip for sleeping better.",
    "Write a haiku about rain.",
    "How many legs does a spider have?",
]
CALL_TIMEOUT_S = 120  # one API call; a call to a killed app fails long before
POLL_S = 2.0
REAPPEAR_WINDOW_S = 20.0  # a target absent at its moment is killed within this after it appears
PROBE_EVERY_S = 10.0  # between a failed free battle of the checks and the next


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills-per-target", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gap", type=float, nargs=2, default=[20.0, 60.0],
                        metavar=("MIN", "MAX"),
                        help="seconds from the product being whole to the next kill")  # fmt: skip
    parser.add_argument("--recovery-timeout", type=float, default=420.0, help="per kill, s")
    parser.add_argument("--end-timeout", type=float, default=600.0,
                        help="for the last jobs to end, s")  # fmt: skip
    parser.add_argument("--start-timeout", type=float, default=420.0, help="first start, s")
    parser.add_argument("--train-steps", type=int, default=24)
    parser.add_argument("--save-steps", type=int, default=4)
    parser.add_argument("--free-every", type=int, default=10,
                        help="a reviewer's free battle every N rounds")  # fmt: skip
    parser.add_argument("--max-new-tokens", type=int, default=24, help="free battle answers")
    parser.add_argument("--session-prompts", type=int, default=3000)
    parser.add_argument("--inbox", type=int, default=3000, help="examples to label")
    parser.add_argument("--models-dir", type=Path, default=REPO / "ftapp-data" / "models")
    parser.add_argument("--home", type=Path, help="use (and keep) this FTAPP_HOME; must not exist")
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser.parse_args()


# --- set-up, before the app starts ------------------------------------------------------------


def prepare_home(home: Path, args: argparse.Namespace) -> tuple[str, str]:
    """The home the app starts on; returns the users' password and the base model's name."""
    from ftapp.auth import add_user
    from ftapp.data.importer import import_file
    from ftapp.data.review import set_status_where
    from ftapp.data.splits import assign_splits
    from ftapp.data.versions import freeze_version
    from ftapp.records import Role
    from ftapp.services import Services
    from ftapp.settings import Settings
    from ftapp.store.db import open_db

    link_models(home, args.models_dir)
    settings = Settings(home=home, backend="echo")
    settings.ensure_dirs()
    open_db(settings.db_path).close()
    services = Services(settings)
    password = secrets.token_urlsafe(12)
    train_rows = [{"prompt": f"What is {i} plus {i}?", "completion": f"{i} plus {i} is {2 * i}."}
                  for i in range(40)]  # fmt: skip
    pair_rows = [{"prompt": f"What is {i} plus {i}?", "chosen": f"{2 * i}. Cheers!",
                  "rejected": f"It is {2 * i}."} for i in range(40)]  # fmt: skip
    inbox_rows = [{"prompt": f"Inbox question {i}?", "completion": f"Answer {i}."}
                  for i in range(args.inbox)]  # fmt: skip
    with services.db() as db:
        add_user(db, ADMIN, Role.ADMIN, password, "faults")
        for name in (*REVIEWERS, PROBE):
            add_user(db, name, Role.REVIEWER, password, "faults")
        for name, rows in ((TRAIN_DATASET, train_rows), (PAIRS_DATASET, pair_rows),
                           (INBOX, inbox_rows)):  # fmt: skip
            path = home.parent / f"{name}.jsonl"
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
            import_file(db, path, name, count_tokens=services.count_tokens, max_tokens=512)
        for name in (TRAIN_DATASET, PAIRS_DATASET):
            set_status_where(db, name, "accepted", ADMIN)
            assign_splits(db, name, (0.8, 0.2, 0.0))
            freeze_version(db, name, ADMIN)
    prepare_arena(services, SESSION, args.session_prompts, len(REVIEWERS), ADMIN)
    return password, services.served_base.name


def hyperparameters(args: argparse.Namespace, method: str) -> list:
    """The Train tab's form values (every TrainConfig field but the version and base model
    pickers, in the dataclass's order): a small job with frequent checkpoints. DPO jobs take
    two pairs a step (its batch holds chosen and rejected answers)."""
    from ftapp.training.config import TrainConfig

    config = TrainConfig(
        dataset_version="", method=method, max_steps=args.train_steps,
        batch_size=2 if method == "dpo" else 1, gradient_accumulation=1, max_length=128,
        lora_rank=4, lora_alpha=8, lora_dropout=0.0, learning_rate=1e-4, warmup_ratio=0.0,
        eval_steps=0, save_steps=args.save_steps, precision="fp32", threads=1,
    )  # fmt: skip
    values = dataclasses.asdict(config)
    return [values[f.name] for f in dataclasses.fields(TrainConfig)[2:]]


# --- the app and its processes ----------------------------------------------------------------


class App:
    """`python app.py` on the prepared home, on the same port at every start."""

    def __init__(self, home: Path, max_new_tokens: int) -> None:
        self.home = home
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        # One thread for generation: training and the load share the 2 cores (DESIGN.md).
        self.env = app_env(home, port, FTAPP_SERVE_THREADS="1",
                           FTAPP_ARENA_MAX_NEW_TOKENS=str(max_new_tokens))  # fmt: skip
        self.log_path = home.parent / "app.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.process = start_app(self.env, self.log_path)
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def processes(self) -> list[tuple[str, psutil.Process]]:
        """(role, process) for every live process of this run: those whose FTAPP_HOME is this
        home (every process the app starts inherits it)."""
        found = []
        for process in psutil.process_iter(["cmdline", "status"]):
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            try:
                if process.environ().get("FTAPP_HOME") != str(self.home):
                    continue
            except psutil.Error:
                continue
            found.append((role_of(process.info["cmdline"] or []), process))
        return found

    def target(self, name: str) -> psutil.Process | None:
        """The process to kill for a target, if it exists now."""
        for role, process in self.processes():
            if role != name:
                continue
            if name == "child" or name == "app" and process.pid == self.pid:
                return process
            if name in ("worker", "vllm") and safe(process.ppid) == self.pid:
                return process
        return None

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.home / "ftapp.db", timeout=30)
        conn.execute("PRAGMA query_only = ON")
        conn.row_factory = sqlite3.Row
        return conn

    def jobs(self) -> list[dict]:
        conn = self.db()
        try:
            return [dict(row) for row in conn.execute("SELECT * FROM jobs ORDER BY id")]
        finally:
            conn.close()

    def kill_everything(self) -> list[str]:
        """SIGKILL every process of this run, each with its process group; what was found."""
        found = self.processes()
        for _, process in found:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)  # a group leader takes its group along
            safe(process.kill)
        if self.process:
            self.process.wait(30)
        return [f"{role} (pid {process.pid})" for role, process in found]


def role_of(cmdline: list[str]) -> str:
    joined = " ".join(cmdline)
    if "ftapp.training.child" in joined:
        return "child"
    if "ftapp.cli" in joined and "worker" in cmdline:
        return "worker"
    if "vllm.entrypoints.openai.api_server" in joined:
        return "vllm"
    if cmdline[1:2] == ["app.py"]:
        return "app"
    return "other"  # vLLM's engine process and its helpers


def safe(getter, default=None):
    try:
        return getter()
    except psutil.Error:
        return default


def alive(process: psutil.Process) -> bool:
    return safe(lambda: process.status() != psutil.STATUS_ZOMBIE, False)


# --- the load: users, each a thread with its own page -------------------------------------------


@dataclass
class Ledger:
    """What the API acknowledged, and the errors the load met (the threads write here)."""

    # reviewer -> {(kind, prompt, choice)}; admin -> {example id: status}
    votes: dict[str, set] = field(default_factory=lambda: defaultdict(set))
    labels: dict[str, dict[int, str]] = field(default_factory=lambda: defaultdict(dict))
    jobs: set[int] = field(default_factory=set)
    calls: Counter = field(default_factory=Counter)  # action -> acknowledged calls
    errors: Counter = field(default_factory=Counter)  # (action, kind) -> count
    lock: threading.Lock = field(default_factory=threading.Lock)

    def vote(self, reviewer: str, kind: str, prompt: str, choice: str) -> None:
        with self.lock:
            self.votes[reviewer].add((kind, prompt, choice))

    def label(self, admin: str, example_id: int, status: str) -> None:
        with self.lock:
            self.labels[admin][example_id] = status

    def count(self, action: str) -> None:
        with self.lock:
            self.calls[action] += 1

    def error(self, action: str, kind: str) -> None:
        with self.lock:
            self.errors[(action, kind)] += 1


class Page:
    """One user's page: a signed-in Client, opened again after any failed call (the app was
    restarted, or the call broke off), so that a round never goes on in a page it didn't
    start in (a vote needs the battle its page was shown)."""

    def __init__(self, app: App, name: str, password: str, ledger: Ledger, tls) -> None:
        self.app, self.name, self.password, self.ledger, self.tls = app, name, password, ledger, tls
        self.client = None
        self.shown: int | None = None  # the labeller's current example

    def call(self, action: str, *inputs, api_name: str):
        try:
            if self.client is None:
                self.client = sign_in(self.app.url, self.name, self.password, self.tls,
                                      CALL_TIMEOUT_S)  # fmt: skip
            result = self.client.predict(*inputs, api_name=api_name)
        except Exception as exc:
            self.ledger.error(action, error_kind(exc))
            self.close()
            raise
        self.ledger.count(action)
        return result

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # a client of an app that is gone
                self.client.close()
        self.client, self.shown = None, None


def prompt_of(chat: list) -> str:
    """The first user message of a Chatbot value (its content a string or a list of parts)."""
    for message in chat or []:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(str(part.get("text", "")) for part in content)
            return str(content)
    return ""


def session_round(page: Page, rng: Random) -> bool:
    """Judge the next session battle; False when the reviewer's queue ran out."""
    shown = page.call("session next", SESSION, api_name="/session_next")
    if "judged every battle" in str(shown[4]):
        return False
    choice = rng.choice(VOTES)
    # The prompt from the battle shown (chat A): a vote leaves the answers out of its reply.
    page.call("session vote", None, None, "", api_name=f"/s_vote_{choice}")
    page.ledger.vote(page.name, "session", prompt_of(shown[2]), choice)
    return True


def free_round(page: Page, rng: Random, number: int) -> str:
    """A free battle on a prompt no other battle has, then a vote; "" when it was judged, else
    what the page said."""
    prompt = f"{page.name} free {number}: {rng.choice(FREE_PROMPTS)}"
    shown = page.call("free send", prompt, api_name="/free_send")
    if shown[1]:  # the status line: "Generation failed." (the engine is down or restarting)
        return str(shown[1])
    choice = rng.choice(VOTES)
    page.call("free vote", None, None, "", api_name=f"/f_vote_{choice}")
    page.ledger.vote(page.name, "free", prompt_of(shown[2]), choice)
    return ""


EXAMPLE_ID = re.compile(r"Example #(\d+)")


def label_round(page: Page, rng: Random) -> bool:
    """Accept or reject the pending example shown; False when none is left."""
    filters = (INBOX, "pending", "all", "", "")
    if page.shown is None:
        view = page.call("review open", *filters, api_name="/review_open")
        found = EXAMPLE_ID.search(str(view[3]))
        page.shown = int(found.group(1)) if found else None
        if page.shown is None:
            return False
    status = rng.choice(["accepted", "rejected"])
    example_id = page.shown
    api_name = "/review_accept" if status == "accepted" else "/review_reject"
    view = page.call("label", *filters, api_name=api_name)
    page.ledger.label(page.name, example_id, status)
    found = EXAMPLE_ID.search(str(view[3]))  # the next pending example, shown on this page
    page.shown = int(found.group(1)) if found else None
    return True


def train_round(page: Page, app: App, forms: dict, base_model: str, pooled: set) -> None:
    """Queue a job when none is waiting or training (SFT and DPO by turns); put the first
    trained adapter in the free-battle pool."""
    jobs = app.jobs()
    if not any(job["status"] in UNFINISHED for job in jobs):
        method = ("sft", "dpo")[len(jobs) % 2]
        dataset = {"sft": TRAIN_DATASET, "dpo": PAIRS_DATASET}[method]
        job_id = page.call("queue job", f"{dataset}@v1", base_model, *forms[method],
                           api_name="/queue_job")  # fmt: skip
        with page.ledger.lock:
            page.ledger.jobs.add(int(job_id))
    done = [job["name"] for job in jobs if job["status"] == "succeeded"]
    if done and not pooled:
        page.call("save pool", ["base", "concise", done[0]], api_name="/arena_save_pool")
        pooled.add(done[0])


class Load:
    """The users at work: reviewers, the labelling admin, the training admin."""

    def __init__(self, app: App, password: str, base_model: str, args, ledger: Ledger) -> None:
        self.app, self.password, self.base_model, self.args = app, password, base_model, args
        self.ledger = ledger
        self.stop = threading.Event()
        self.no_more_jobs = threading.Event()
        self.tls = ssl.create_default_context()
        self.threads: list[threading.Thread] = []
        self.pooled: set[str] = set()

    def page(self, name: str) -> Page:
        return Page(self.app, name, self.password, self.ledger, self.tls)

    def start(self) -> None:
        for name in REVIEWERS:
            self._spawn(self._review, name)
        self._spawn(self._label, ADMIN)
        self._spawn(self._train, ADMIN)

    def _spawn(self, work, name: str) -> None:
        rng = Random(f"{self.args.seed}-{work.__name__}-{name}")
        thread = threading.Thread(target=work, args=(self.page(name), rng),
                                  name=f"{work.__name__}-{name}", daemon=True)  # fmt: skip
        thread.start()
        self.threads.append(thread)

    def _loop(self, page: Page, one_round, pause: tuple[float, float], rng: Random) -> None:
        """Rounds until stopped; a failed call waits a little (the app may be restarting)."""
        while not self.stop.is_set():
            try:
                more = one_round()
            except Exception:  # counted by the page; the round is over
                self.stop.wait(2.0)
                continue
            if more is False:
                return
            self.stop.wait(rng.uniform(*pause))
        page.close()

    def _review(self, page: Page, rng: Random) -> None:
        rounds = iter(range(1, 10**9))

        def one_round() -> bool:
            number = next(rounds)
            if number % self.args.free_every == 0:
                free_round(page, rng, number)
                return True
            return session_round(page, rng)

        self._loop(page, one_round, (0.3, 1.0), rng)

    def _label(self, page: Page, rng: Random) -> None:
        self._loop(page, lambda: label_round(page, rng), (0.3, 1.0), rng)

    def _train(self, page: Page, rng: Random) -> None:
        forms = {method: hyperparameters(self.args, method) for method in ("sft", "dpo")}

        def one_round() -> None:
            if not self.no_more_jobs.is_set():
                train_round(page, self.app, forms, self.base_model, self.pooled)

        self._loop(page, one_round, (POLL_S, POLL_S), rng)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(CALL_TIMEOUT_S + 10)


# --- kills and recovery ---------------------------------------------------------------------


@dataclass
class Kill:
    target: str
    at_s: float = 0.0  # since the app first answered
    pid: int | None = None
    job_id: int | None = None  # the job training at the moment of the kill
    survived: bool = False
    recovery_s: float | None = None
    reason: str = ""  # why it was not survived (or not tried)


class Chaos:
    """The kill schedule, and the checks that the product is whole again after each kill."""

    def __init__(self, app: App, probe: Page, args, rng: Random) -> None:
        self.app, self.probe, self.args, self.rng = app, probe, args, rng
        self.started = time.monotonic()
        self.kills: list[Kill] = []
        self.probes = 0
        self._leftovers: list[psutil.Process] = []  # what the app killed last had started
        self._next_probe = 0.0
        self._probe_said: str | None = None

    def run(self, plan: list[str]) -> None:
        for target in plan:
            kill = Kill(target)
            self.kills.append(kill)
            self._kill(kill)
            if kill.pid is None:
                return  # the target never appeared: the product is not what it should be
            self._recover(kill)
            status = "survived" if kill.survived else f"NOT SURVIVED: {kill.reason}"
            took = f" in {kill.recovery_s:.0f} s" if kill.survived else ""
            print(f"  {kill.at_s:7.1f} s  kill -9 {target:<6} (pid {kill.pid}): {status}{took}",
                  flush=True)  # fmt: skip
            if not kill.survived:
                return  # the next kills would not tell anything

    def _kill(self, kill: Kill) -> None:
        """SIGKILL the target at a moment drawn from --gap, or, if it doesn't exist then, at one
        drawn from the REAPPEAR_WINDOW_S after it next appears."""
        time.sleep(self.rng.uniform(*self.args.gap))
        deadline = time.monotonic() + self.args.recovery_timeout
        found = self._find(kill.target)
        while found is None:
            if time.monotonic() > deadline:
                kill.reason = f"no {kill.target} process for {self.args.recovery_timeout:.0f} s"
                return
            time.sleep(0.5)
            if self._find(kill.target) is not None:
                time.sleep(self.rng.uniform(0, REAPPEAR_WINDOW_S))
                found = self._find(kill.target)
        process, kill.job_id = found
        # After an app kill, everything it started must go: its worker, vLLM server, engine
        # process, and the training child of its worker.
        is_app = kill.target == "app"
        self._leftovers = safe(lambda: process.children(recursive=True), []) if is_app else []
        kill.pid = process.pid
        kill.at_s = time.monotonic() - self.started
        safe(process.kill)
        if is_app:
            self.app.process.wait(30)
            self.app.start()  # what the README says to do: start it again

    def _find(self, target: str) -> tuple[psutil.Process, int | None] | None:
        """The target's process now, and the job training at this moment. A training child
        counts only while its job is recorded as running (once it has recorded the end of
        its job, nothing is left to resume)."""
        process = self.app.target(target)
        if process is None:
            return None
        running = [job for job in self.app.jobs() if job["status"] == "running"]
        if target == "child":
            running = [job for job in running if job["child_pid"] == process.pid]
            if not running:
                return None
        return process, running[0]["id"] if running else None

    def _recover(self, kill: Kill) -> None:
        killed_at = time.monotonic()
        deadline = killed_at + self.args.recovery_timeout
        reason = "not checked"
        while time.monotonic() < deadline:
            reason = self.not_whole(self._leftovers)
            if reason is None:
                kill.survived, kill.recovery_s = True, time.monotonic() - killed_at
                return
            time.sleep(POLL_S)
        kill.reason = reason

    def not_whole(self, leftovers: list[psutil.Process]) -> str | None:
        """Why the product isn't whole now, or None if it is."""
        if self.app.pid is None:
            return f"the app exited ({self.app.process.returncode})"
        if not answers(self.app.url):
            return "the app does not answer"
        processes = self.app.processes()
        if not any(role == "worker" and safe(p.ppid) == self.app.pid for role, p in processes):
            return "no worker runs beside the app"
        left = [f"pid {p.pid} {' '.join(safe(p.cmdline, []))[:60]}" for p in leftovers if alive(p)]
        if left:
            return f"the killed app left running: {', '.join(left)}"
        children = {p.pid for role, p in processes if role == "child"}
        for job in self.app.jobs():
            if job["status"] in UNFINISHED and job["status"] != "running":
                return f"job #{job['id']} is {job['status']}"
            if job["status"] == "running" and job["child_pid"] not in children:
                return f"job #{job['id']} is running without a training process"
        return self.battle()

    def battle(self) -> str | None:
        """A free battle answered (and voted on), or why not. After a failed one, the next
        waits PROBE_EVERY_S: each try while vLLM starts leaves a failed battle behind."""
        if time.monotonic() < self._next_probe:
            return self._probe_said
        self.probes += 1
        try:
            said = free_round(self.probe, self.rng, self.probes)
            self._probe_said = f"a free battle was not answered: {said}" if said else None
        except Exception as exc:
            self._probe_said = f"a free battle failed: {error_kind(exc)}"
        self._next_probe = time.monotonic() + (PROBE_EVERY_S if self._probe_said else 0)
        return self._probe_said


# --- the end: jobs, processes, the database -----------------------------------------------------


def wait_for_jobs(app: App, seconds: float) -> list[dict]:
    """Until no job is queued, running or interrupted (or time is up); the jobs."""
    deadline = time.monotonic() + seconds
    while True:
        jobs = app.jobs()
        if not any(job["status"] in UNFINISHED for job in jobs) or time.monotonic() > deadline:
            return jobs
        time.sleep(POLL_S)


def stored_votes(conn: sqlite3.Connection) -> dict[str, set]:
    stored: dict[str, set] = defaultdict(set)
    rows = conn.execute(
        "SELECT v.reviewer, b.session_id, b.conversation_a_json, v.choice "
        "FROM votes v JOIN battles b ON b.id = v.battle_id"
    )
    for reviewer, session_id, conversation, choice in rows:
        kind = "free" if session_id is None else "session"
        stored[reviewer].add((kind, prompt_of(json.loads(conversation)), choice))
    return stored


def stored_labels(conn: sqlite3.Connection) -> dict[str, dict[int, str]]:
    stored: dict[str, dict[int, str]] = defaultdict(dict)
    rows = conn.execute(
        "SELECT e.id, e.status, e.reviewed_by FROM examples e JOIN datasets d "
        "ON d.id = e.dataset_id WHERE d.name = ? AND e.reviewed_by IS NOT NULL",
        [INBOX],
    )
    for example_id, status, admin in rows:
        stored[admin][example_id] = status
    return stored


def compare(ledger: Ledger, conn: sqlite3.Connection) -> dict:
    votes, labels = stored_votes(conn), stored_labels(conn)
    vote_rows = {}
    for name in sorted(set(ledger.votes) | set(votes)):
        acked, kept = ledger.votes.get(name, set()), votes.get(name, set())
        vote_rows[name] = {"acknowledged": len(acked), "stored": len(kept),
                           "missing": sorted(map(list, acked - kept))}  # fmt: skip
    label_rows = {}
    for name in sorted(set(ledger.labels) | set(labels)):
        acked, kept = ledger.labels.get(name, {}), labels.get(name, {})
        missing = sorted(i for i, status in acked.items() if kept.get(i) != status)
        label_rows[name] = {"acknowledged": len(acked), "stored": len(kept), "missing": missing}
    return {"votes": vote_rows, "labels": label_rows}


def job_outcomes(jobs: list[dict], queued: set[int]) -> dict:
    outcome: dict = {"succeeded": 0, "resumed": 0, "failed": [], "unfinished": [], "other": [],
                     "succeeded_by_method": {}}  # fmt: skip
    for job in jobs:
        metrics = json.loads(job["metrics_json"]) if job["metrics_json"] else {}
        if job["status"] == "succeeded":
            outcome["succeeded"] += 1
            outcome["resumed"] += bool(job["attempts"] > 1 or metrics.get("resumed_from"))
            method = json.loads(job["config_json"]).get("method", "sft")
            by_method = outcome["succeeded_by_method"]
            by_method[method] = by_method.get(method, 0) + 1
        elif job["status"] == "failed":
            outcome["failed"].append({"id": job["id"], "error": job["error"]})
        elif job["status"] in UNFINISHED:
            outcome["unfinished"].append({"id": job["id"], "status": job["status"]})
        else:
            outcome["other"].append({"id": job["id"], "status": job["status"]})
    outcome["queued_through_the_api"] = len(queued)
    outcome["queued_but_missing"] = sorted(queued - {job["id"] for job in jobs})
    return outcome


def problems_of(report: dict) -> list[str]:
    problems = []
    for kill in report["kills"]:
        if not kill["survived"]:
            problems.append(f"kill -9 {kill['target']} not survived: {kill['reason']}")
    tried = report["total"]["tried"]
    if tried < report["kills_planned"]:
        problems.append(f"only {tried} of {report['kills_planned']} kills were tried")
    for what in ("votes", "labels"):
        for name, row in report[what].items():
            if row["missing"]:
                problems.append(f"{len(row['missing'])} acknowledged {what} of {name} not stored")
    jobs = report["jobs"]
    for job in jobs["failed"]:
        if not (job["error"] or "").strip():
            problems.append(f"job #{job['id']} failed without a reason")
    for job in jobs["unfinished"] + jobs["other"]:
        problems.append(f"job #{job['id']} ended {job['status']}")
    if jobs["queued_but_missing"]:
        problems.append(f"jobs queued through the API but not stored: {jobs['queued_but_missing']}")
    if jobs["succeeded"] == 0:
        problems.append("no job succeeded")
    if not report["final_battle"]:
        problems.append("the arena did not answer a free battle at the end")
    if report["left_running"]:
        problems.append(f"left running after the app stopped: {report['left_running']}")
    return problems


def print_report(report: dict) -> None:
    print("\n| target | kills tried | survived | recovery s (each) |")
    print("|---|---|---|---|")
    for target in TARGETS:
        kills = [k for k in report["kills"] if k["target"] == target]
        times = ", ".join(f"{k['recovery_s']:.0f}" for k in kills if k["survived"])
        print(f"| {target} | {len(kills)} | {sum(k['survived'] for k in kills)} | {times} |")
    total = report["total"]
    print(f"| all | {total['tried']} | {total['survived']} | |")
    for what in ("votes", "labels"):
        print(f"\n| {what} of | acknowledged by the API | stored | acknowledged, not stored |")
        print("|---|---|---|---|")
        for name, row in report[what].items():
            print(f"| {name} | {row['acknowledged']} | {row['stored']} | {len(row['missing'])} |")
    jobs = report["jobs"]
    print(f"\nJobs: {jobs['succeeded']} succeeded ({jobs['resumed']} of them resumed after a "
          f"kill), {len(jobs['failed'])} failed, {len(jobs['unfinished'])} unfinished")  # fmt: skip
    for job in jobs["failed"]:
        print(f"  job #{job['id']} failed: {job['error']}")
    print(f"Final free battle answered: {report['final_battle']}; app starts: "
          f"{report['app_starts']}; wall {report['wall_s']:.0f} s")  # fmt: skip
    errors = report["load_errors"]
    print(f"Load: {report['load_calls']} acknowledged calls; {sum(errors.values())} failed "
          "calls (expected around kills), by kind:")  # fmt: skip
    for kind, count in sorted(errors.items(), key=lambda item: -item[1])[:12]:
        print(f"  {count} × {kind}")
    print(
        "\nALL HELD"
        if not report["problems"]
        else "\nPROBLEMS:\n  " + "\n  ".join(report["problems"])
    )


# --- the run ------------------------------------------------------------------------------------


def run(home: Path, args: argparse.Namespace) -> dict:
    rng = Random(args.seed)
    plan = [target for target in TARGETS for _ in range(args.kills_per_target)]
    rng.shuffle(plan)
    print(f"preparing {home}")
    password, base_model = prepare_home(home, args)
    app = App(home, args.max_new_tokens)
    ledger = Ledger()
    load = Load(app, password, base_model, args, ledger)
    probe = load.page(PROBE)
    report: dict = {"seed": args.seed, "kills_per_target": args.kills_per_target,
                    "kills_planned": len(plan), "plan": plan}  # fmt: skip
    started = time.monotonic()
    try:
        print("starting the app (vLLM and the worker beside it)", flush=True)
        app.start()
        chaos = Chaos(app, probe, args, rng)
        deadline = time.monotonic() + args.start_timeout
        while (reason := chaos.not_whole([])) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if reason:
            raise SystemExit(f"the app never became whole: {reason}\n{log_tail(app.log_path)}")
        print(f"whole after {time.monotonic() - started:.0f} s; load on; kills: {' '.join(plan)}",
              flush=True)  # fmt: skip
        load.start()
        chaos.started = time.monotonic()
        chaos.run(plan)
        print("kills done; no more jobs; waiting for the last ones to end", flush=True)
        load.no_more_jobs.set()
        jobs = wait_for_jobs(app, args.end_timeout)
        load.finish()
        deadline = time.monotonic() + 60
        while (said := chaos.battle()) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        report["final_battle"] = said is None
        # As a user would: the app stops its worker and vLLM server.
        stop_app(app.process, STOP_GRACE_S)
        report["left_running"] = app.kill_everything()
        report["app_starts"] = app.starts
    finally:
        load.stop.set()
        probe.close()
        if app.process is not None:
            app.kill_everything()
            stop_app(app.process, STOP_GRACE_S)
    conn = sqlite3.connect(home / "ftapp.db", timeout=30)
    try:
        report.update(compare(ledger, conn))
        report["jobs"] = job_outcomes(jobs, ledger.jobs)
    finally:
        conn.close()
    report["kills"] = [dataclasses.asdict(kill) for kill in chaos.kills]
    report["targets"] = {t: {"tried": sum(k.target == t and k.pid is not None for k in chaos.kills),
                             "survived": sum(k.target == t and k.survived for k in chaos.kills)}
                         for t in TARGETS}  # fmt: skip
    rows = report["targets"].values()
    report["total"] = {"tried": sum(row["tried"] for row in rows),
                       "survived": sum(row["survived"] for row in rows)}  # fmt: skip
    report["wall_s"] = time.monotonic() - started
    report["load_calls"] = sum(ledger.calls.values())
    report["load_errors"] = {f"{action}: {kind}": n for (action, kind), n in ledger.errors.items()}
    report["problems"] = problems_of(report)
    return report


def main() -> int:
    args = parse_args()
    # SIGTERM (a test's timeout, a CI runner) ends like Ctrl-C: every process is killed.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.home:
        report = run(args.home, args)
    else:
        with tempfile.TemporaryDirectory(prefix="ftapp-faults-") as tmp:
            report = run(Path(tmp) / "home", args)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if not report["problems"] else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
