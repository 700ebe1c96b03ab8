"""Import throughput: rows per second for a JSONL import (read, validate, count tokens, dedupe,
insert), beside what a user would otherwise run on the same file in the same run: a bare
sqlite-utils `insert_all`, and `datasets.load_dataset("json")` + a batched `.map` that counts
tokens with the same tokenizer and chat template.

    .venv/bin/python benchmarks/bench_import.py [--rows 100000] [--seed 0] [--repeat 1]

The file is synthetic and the same on every run for a given --rows and --seed: prompt/completion
rows of varied length (prompt 5-120 words, completion 20-400), a fifth with a system prompt,
a little non-ASCII text, and a few percent of rows the import must reject or drop (invalid JSON,
empty completion, missing field, over the token limit, exact duplicates).

Runs, each into a fresh SQLite file with the house pragmas (WAL, synchronous=NORMAL) or a fresh
datasets cache in the temporary directory:
- baseline: `insert_all(rows, batch_size=1000)` of the rows json.loads could parse (parsing is
  not timed): the floor cost of just storing them;
- datasets, num_proc=None / 1 / 2: `load_dataset("json", data_files=..., cache_dir=...)` then
  `.map(count, batched=True, num_proc=...)`, where `count` renders the bundled model's chat
  template per row and calls its tokenizer on the batch; load + map are timed. It reads a copy
  of the file without the lines json.loads can't parse (load_dataset refuses the whole file
  for one bad line), made untimed. num_proc=None runs in this process; 1 and 2 are worker
  processes, where datasets turns the tokenizer's own threads off;
- ftapp import, tokens off: `import_file` with a token counter that returns zeros;
- ftapp import, tokens on: `import_file` with the bundled model's ChatTokenCounter, as the app
  runs it; the phase split comes from time-stamping its progress messages.
Each ratio is rows/s over a baseline's rows/s; with --repeat N each kind of run is done N times
and the fastest shown. Nothing is asserted; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import sqlite_utils
from transformers import AutoTokenizer

from ftapp.data.importer import import_file
from ftapp.models.bundled import prepare_bundled_model
from ftapp.models.tokens import ChatTokenCounter
from ftapp.records import ImportReport
from ftapp.settings import load_settings
from ftapp.store.db import open_db

# Common English words, most frequent first; drawn with Zipf-like weights.
WORD_TEXT = """
the of and to a in is it you that he was for on are with as I his they be at one have this
from or had by not word but what some we can out other were all there when up use your how said
an each she which do their time if will way about many then them write would like so these her
long make thing see him two has look more day could go come did number sound no most people my
over know water than call first who may down side been now find any new work part take get
place made live where after back little only round man year came show every good me give our
under name very through just form sentence great think say help low line differ turn cause much
mean before move right boy old too same tell does set three want air well also play small end
put home read hand port large spell add even land here must big high such follow act why ask
men change went light kind off need house picture try us again animal point mother world near
build self earth father head stand own page should country found answer school grow study still
learn plant cover food sun four between state keep eye never last let thought city tree cross
farm hard start might story saw far sea draw left late run while press close night real life
few north open seem together next white children begin got walk example ease paper group always
music those both mark often letter until mile river car feet care second book carry took
science eat room friend began idea fish mountain stop once base hear horse cut sure watch color
face wood main enough plain girl usual young ready above ever red list though feel talk bird
soon body dog family direct pose leave song measure door product black short numeral class wind
question happen complete ship area half rock order fire south problem piece told knew pass
since top whole king space heard best hour better true during hundred five remember step early
hold west ground interest reach fast verb sing listen six table travel less morning ten simple
several vowel toward war lay against pattern slow center love person money serve appear road
map rain rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark
machine note wait plan figure star box noun field rest correct able pound done beauty drive
stood contain front teach week final gave green oh quick develop ocean warm free minute strong
special mind behind clear tail produce fact street inch multiply nothing course stay wheel full
force blue object decide surface deep moon island foot system busy test record boat common gold
possible plane stead dry wonder laugh thousand ago ran check game shape equate hot miss brought
heat snow tire bring yes distant fill east paint language among function variable database
query model train adapter token dataset python error value return string integer loop array
"""
WORDS = WORD_TEXT.split()
# A little text outside ASCII, so encoding paths do real work.
EXTRA_WORDS = ["café", "naïve", "résumé", "Zürich", "東京", "数据", "модель", "🙂", "—"]
SENTENCE_POOL = 20_000


@dataclass
class Mix:
    """How many rows of each kind the generator wrote (what the import should find)."""

    good: int = 0
    with_system: int = 0
    invalid_json: int = 0
    empty_completion: int = 0
    missing_field: int = 0
    too_long: int = 0
    duplicates: int = 0


@dataclass
class Run:
    label: str
    rows: int
    seconds: float
    db_bytes: int
    workdir: Path
    report: ImportReport | None = None
    phases: dict[str, float] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)  # line of the file -> tokens counted

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def make_sentences(rng: random.Random) -> list[tuple[str, int]]:
    """A pool of (sentence, word count); texts are built by drawing from it."""
    weights = [1 / (rank + 1) for rank in range(len(WORDS))]
    sentences = []
    for _ in range(SENTENCE_POOL):
        n = rng.randint(5, 20)
        words = rng.choices(WORDS, weights=weights, k=n)
        if rng.random() < 0.05:
            words[rng.randrange(n)] = rng.choice(EXTRA_WORDS)
        if rng.random() < 0.1:
            words[rng.randrange(n)] = str(rng.randint(0, 10_000))
        text = " ".join(words)
        end = rng.choice(".....?!:")
        sentences.append((text[0].upper() + text[1:] + end, n))
    return sentences


def make_text(rng: random.Random, sentences: list[tuple[str, int]], n_words: int) -> str:
    parts, count = [], 0
    while count < n_words:
        sentence, n = sentences[rng.randrange(len(sentences))]
        parts.append(sentence)
        count += n
        if rng.random() < 0.15:
            parts.append("\n\n")
    return " ".join(parts).replace(" \n\n ", "\n\n").strip()


# Share of each kind of row; the rest are good rows.
KINDS = {
    "duplicate": 0.03,
    "invalid_json": 0.02,
    "empty_completion": 0.01,
    "missing_field": 0.005,
    "too_long": 0.003,
}


def pick_kind(roll: float) -> str:
    for kind, share in KINDS.items():
        if roll < share:
            return kind
        roll -= share
    return "good"


def write_jsonl(path: Path, n_rows: int, seed: int) -> Mix:
    """Write the synthetic file; the same bytes for the same n_rows and seed."""
    rng = random.Random(seed)
    sentences = make_sentences(rng)
    mix = Mix()
    good_lines: list[str] = []
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(n_rows):
            kind = pick_kind(rng.random()) if good_lines else "good"
            if kind == "duplicate":
                handle.write(good_lines[rng.randrange(len(good_lines))])
                mix.duplicates += 1
                continue
            row: dict[str, str] = {}
            if rng.random() < 0.2:
                row["system"] = make_text(rng, sentences, rng.randint(5, 30))
            row["prompt"] = make_text(rng, sentences, rng.randint(5, 120))
            if kind == "empty_completion":
                row["completion"] = rng.choice(["", "   ", "\n"])
            elif kind == "missing_field":
                row["response"] = make_text(rng, sentences, rng.randint(20, 400))
            elif kind == "too_long":
                row["completion"] = make_text(rng, sentences, rng.randint(1800, 2600))
            else:
                row["completion"] = make_text(rng, sentences, rng.randint(20, 400))
            line = json.dumps(row, ensure_ascii=False) + "\n"
            if kind == "invalid_json":
                line = line[: rng.randrange(10, len(line) - 2)] + "\n"  # cut short
            elif kind == "good":
                mix.with_system += "system" in row
                good_lines.append(line)
            setattr(mix, kind, getattr(mix, kind) + 1)
            handle.write(line)
    return mix


def db_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def parse_rows(jsonl: Path) -> list[tuple[int, str, dict]]:
    """(line number, text, row) of the lines json.loads can parse, for the baselines (not
    timed)."""
    rows = []
    with jsonl.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                rows.append((number, line, json.loads(line)))
            except json.JSONDecodeError:
                continue
    return rows


def run_baseline(rows: list[dict], workdir: Path) -> Run:
    """Bare insert_all of pre-parsed rows into a fresh file with the house pragmas."""
    columns: dict[str, type] = {}
    for row in rows:
        columns.update(dict.fromkeys(row, str))
    workdir.mkdir(parents=True)
    path = workdir / "baseline.db"
    db = sqlite_utils.Database(path)
    db.enable_wal()
    db.execute("PRAGMA synchronous = NORMAL")
    db["examples"].create(columns)  # like ftapp's table, it exists before the timer starts
    gc.collect()
    start = time.perf_counter()
    db["examples"].insert_all(rows, batch_size=1000)
    seconds = time.perf_counter() - start
    inserted = db["examples"].count
    db.close()
    assert inserted == len(rows), (inserted, len(rows))
    return Run("baseline: bare insert_all", inserted, seconds, db_size(path), workdir)


def run_datasets(
    label: str, clean: Path, lines: list[int], workdir: Path, tokenizer: Any, num_proc: int | None
) -> Run:
    """load_dataset("json") + a batched map counting each row's tokens under the chat template,
    as a user would write it; `lines` are the source lines of `clean`'s rows."""
    import datasets  # main imported it, once HF_DATASETS_CACHE was set

    def count_tokens(batch: dict[str, list]) -> dict[str, list[int]]:
        systems = batch.get("system") or [None] * len(batch["prompt"])
        conversations = []
        for system, prompt, completion in zip(
            systems, batch["prompt"], batch["completion"], strict=True
        ):
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": prompt})
            messages.append({"role": "assistant", "content": completion or ""})
            conversations.append(messages)
        texts = tokenizer.apply_chat_template(conversations, tokenize=False)
        encoded = tokenizer(texts, add_special_tokens=False)
        return {"n_tokens": [len(ids) for ids in encoded["input_ids"]]}

    workdir.mkdir(parents=True)
    parallelism = os.environ.get("TOKENIZERS_PARALLELISM")
    gc.collect()
    start = time.perf_counter()
    try:
        dataset = datasets.load_dataset(
            "json", data_files=str(clean), split="train", cache_dir=str(workdir)
        )
        dataset = dataset.map(count_tokens, batched=True, num_proc=num_proc)
    finally:
        # map(num_proc=...) sets TOKENIZERS_PARALLELISM=false for its workers and leaves it set
        # in this process's C environment (os.environ only looks restored): every later
        # tokenizer call here would run on one core.
        if parallelism is None:
            os.unsetenv("TOKENIZERS_PARALLELISM")
        else:
            os.putenv("TOKENIZERS_PARALLELISM", parallelism)
    seconds = time.perf_counter() - start
    tokens = dict(zip(lines, dataset["n_tokens"], strict=True))
    run = Run(label, len(dataset), seconds, dir_size(workdir), workdir, tokens=tokens)
    del dataset
    return run


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class PhaseClock:
    """A progress callback that time-stamps the importer's phase messages."""

    PHASES = ("reading", "validating", "counting tokens", "writing", "done")

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def __call__(self, fraction: float, message: str) -> None:
        now = time.perf_counter()
        phase = next((p for p in self.PHASES if message.startswith(p)), None)
        if phase is not None:
            self.first.setdefault(phase, now)
            self.last[phase] = now

    def split(self, start: float, end: float) -> dict[str, float]:
        """Seconds per phase; empty if a phase message never came (the importer changed)."""
        if not all(p in self.first for p in self.PHASES):
            return {}
        t = self.first
        return {
            "read + parse JSON": t["validating"] - t["reading"],
            "validate + drop copies": t["counting tokens"] - t["validating"],
            "count tokens": self.last["counting tokens"] - t["counting tokens"],
            "length check + build rows": t["writing"] - self.last["counting tokens"],
            "write (one transaction)": t["done"] - t["writing"],
            "other": (t["reading"] - start) + (end - t["done"]),
        }


def run_ftapp(
    label: str,
    jsonl: Path,
    home: Path,
    count_tokens: Callable[[list[list[dict[str, str]]]], list[int]],
    max_tokens: int,
) -> Run:
    settings = load_settings({"FTAPP_HOME": str(home)})
    settings.ensure_dirs()
    db = open_db(settings.db_path)
    clock = PhaseClock()
    gc.collect()
    start = time.perf_counter()
    report = import_file(
        db,
        jsonl,
        "bench",
        count_tokens=count_tokens,
        max_tokens=max_tokens,
        on_error="skip",
        progress=clock,
    )
    end = time.perf_counter()
    tokens = dict(db.execute("SELECT source_line, n_tokens FROM examples").fetchall())
    db.close()
    return Run(
        label,
        report.n_rows,
        end - start,
        db_size(settings.db_path),
        home,
        report=report,
        phases=clock.split(start, end),
        tokens=tokens,
    )


def best_in_rounds(repeat: int, kinds: dict[str, Callable[[int], Run]]) -> dict[str, Run]:
    """Each kind of run `repeat` times, taking turns (so a change in the machine's load falls on
    every kind), each into its own fresh directory (removed afterwards); the fastest of each."""
    best: dict[str, Run] = {}
    for i in range(repeat):
        for label, once in kinds.items():
            run = once(i)
            print(f"  round {i + 1}: {label:<30} {run.seconds:>7.2f} s", flush=True)
            shutil.rmtree(run.workdir)
            gc.collect()
            if label not in best or run.seconds < best[label].seconds:
                best[label] = run
    return best


def no_tokens(conversations: list[list[dict[str, str]]]) -> list[int]:
    return [0] * len(conversations)


def print_results(runs: list[Run], baseline: Run) -> None:
    print()
    header = (
        f"{'run':<30} {'rows':>8} {'seconds':>8} {'rows/s':>8} {'ratio':>7} {'1/ratio':>7}"
        f" {'MB out':>6}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        ratio = run.rate / baseline.rate
        print(
            f"{run.label:<30} {run.rows:>8,} {run.seconds:>8.2f} {run.rate:>8,.0f} "
            f"{ratio:>6.3f}x {1 / ratio:>6.1f}x {run.db_bytes / 1e6:>6.1f}"
        )
    print("ratio = run rows/s / baseline rows/s (rows: lines in the file for ftapp, rows")
    print("read for the others, which skip the unparseable lines); MB out: database file + WAL,")
    print("or the datasets cache (Arrow files)")
    for run in runs:
        if not run.phases:
            continue
        print(f"\nphases of '{run.label}':")
        for name, seconds in run.phases.items():
            print(f"  {name:<38} {seconds:>7.2f} s  {100 * seconds / run.seconds:>5.1f} %")


def print_against(full: Run, baselines: list[Run]) -> None:
    """ftapp's rows/s over each baseline's, and whether the token counts agree."""
    print(f"\n'{full.label}' rows/s over each baseline's rows/s:")
    for run in baselines:
        print(f"  {run.label:<30} {full.rate / run.rate:>7.3f}x")
    for run in baselines:
        if not run.tokens:
            continue
        differ = [line for line, n in full.tokens.items() if run.tokens.get(line) != n]
        print(
            f"token counts of the {len(full.tokens):,} imported rows, '{run.label}': "
            + (f"{len(differ):,} differ (first lines: {differ[:5]})" if differ else "all equal")
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the file (100000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generator (0)")
    parser.add_argument("--max-tokens", type=int, default=2048, help="import limit (2048)")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="where the bundled model lives (default: FTAPP_HOME/models)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each kind; the fastest is shown (1)"
    )
    parser.add_argument(
        "--skip-tokens-off", action="store_true", help="leave out the run without token counting"
    )
    args = parser.parse_args(argv)

    models_dir = args.models_dir or load_settings().models_dir
    model_dir = prepare_bundled_model(models_dir)

    with tempfile.TemporaryDirectory(prefix="ftapp-bench-import-") as tmp:
        workdir = Path(tmp)
        jsonl = workdir / "bench.jsonl"
        start = time.perf_counter()
        mix = write_jsonl(jsonl, args.rows, args.seed)
        generated = time.perf_counter() - start

        print(
            f"import benchmark: {args.rows:,} JSONL rows, seed {args.seed}, "
            f"best of {args.repeat} run(s) each"
        )
        print(
            f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}, SQLite {sqlite3.sqlite_version}, "
            f"sqlite-utils {version('sqlite-utils')}, tokenizers {version('tokenizers')}; "
            f"load average {os.getloadavg()[0]:.2f} at start"
        )
        print(
            f"file: {jsonl.stat().st_size / 1e6:.1f} MB, generated in {generated:.1f} s; "
            f"{mix.good:,} good ({mix.with_system:,} with a system prompt), "
            f"{mix.duplicates:,} exact duplicates, {mix.invalid_json:,} invalid JSON, "
            f"{mix.empty_completion:,} empty completions, {mix.missing_field:,} missing "
            f"completion, {mix.too_long:,} over {args.max_tokens} tokens"
        )

        parsed = parse_rows(jsonl)
        rows = [row for _, _, row in parsed]
        clean = workdir / "clean.jsonl"
        clean.write_text("".join(text for _, text, _ in parsed), encoding="utf-8")
        lines = [number for number, _, _ in parsed]
        del parsed
        # Its cache in the temporary directory, so nothing is reused from or left in ~/.cache.
        os.environ["HF_DATASETS_CACHE"] = str(workdir / "hf-datasets")
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))  # loaded before the timers
        counter = ChatTokenCounter(model_dir)
        counter([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hi"}]])

        kinds: dict[str, Callable[[int], Run]] = {
            "baseline: bare insert_all": lambda i: run_baseline(rows, workdir / f"baseline-{i}")
        }
        for num_proc in (None, 1, 2):
            kinds[f"datasets, num_proc={num_proc}"] = (
                lambda i, n=num_proc: run_datasets(
                    f"datasets, num_proc={n}", clean, lines, workdir / f"datasets-{n}-{i}",
                    tokenizer, n,
                )
            )  # fmt: skip
        if not args.skip_tokens_off:
            kinds["ftapp import, tokens off"] = lambda i: run_ftapp(
                "ftapp import, tokens off", jsonl, workdir / f"home-no-tokens-{i}", no_tokens,
                args.max_tokens,
            )  # fmt: skip
        kinds["ftapp import, tokens on"] = lambda i: run_ftapp(
            "ftapp import, tokens on", jsonl, workdir / f"home-{i}", counter, args.max_tokens
        )
        # As the app does (ui/app.py): the objects made so far (libraries, parsed rows) out of
        # the garbage collector's sight, for every run alike.
        gc.freeze()
        best = best_in_rounds(args.repeat, kinds)
        runs = list(best.values())
        baseline, full = best["baseline: bare insert_all"], best["ftapp import, tokens on"]

        report = full.report
        assert report is not None
        print(
            f"\nftapp import: {report.n_imported:,} imported, {len(report.problems):,} rejected, "
            f"{len(report.duplicates):,} duplicates dropped, of {report.n_rows:,} rows"
        )
        print_results(runs, baseline)
        print_against(full, [run for run in runs if not run.label.startswith("ftapp")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
