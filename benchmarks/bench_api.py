"""The app's OpenAI-compatible API against calling its vLLM server directly: what the key check,
the logging and the proxying cost a client, at 1, 4 and 16 concurrent streaming chats.

    .venv/bin/python benchmarks/bench_api.py [--concurrency 1,4,16] [--requests-per-client 2]
        [--max-new-tokens 64]

The app runs as `python app.py` (FTAPP_BACKEND=vllm, its own vLLM server, no worker) with the
base model promoted and one API key. Each level runs twice on the same server, first straight
to vLLM (the baseline: the base model by its vLLM name, no key), then through the app's /v1
(`production`, with the key, every call logged in SQLite), with the real `openai` client,
greedy, the same prompts (../shared/datasets/alpaca_en_demo.json). Time to first token runs
from sending to the first non-empty piece; throughput is output tokens (re-tokenized with the
model's tokenizer, the same count for both) over the level's wall time. At the end, the
requests logged in SQLite are counted against those answered (none lost, none twice).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

import openai
from bench_serve import load_prompts, run_clients
from running_app import (
    AppFailed,
    app_env,
    free_port,
    link_models,
    start_app,
    stop_app,
    wait_until_up,
)

from ftapp.deploy.api_keys import create_key
from ftapp.deploy.production import promote
from ftapp.models.bundled import prepare_bundled_model
from ftapp.models.registry import bundled_base_model
from ftapp.settings import Settings, load_settings
from ftapp.store.db import open_db


def run_level(client: openai.OpenAI, model: str, concurrency: int, per_client: int,
              prompts: list[str], max_tokens: int, count) -> dict:  # fmt: skip
    def stream(prompt: str) -> Iterator[str]:
        chunks = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], temperature=0,
            max_tokens=max_tokens, stream=True,
        )  # fmt: skip
        for chunk in chunks:
            yield (chunk.choices[0].delta.content if chunk.choices else None) or ""

    ttft, tokens, errors, seconds = run_clients(concurrency, per_client, prompts, stream, count)
    return {"rate": sum(tokens) / seconds, "ttft": statistics.median(ttft) if ttft else None,
            "requests": len(tokens), "errors": len(errors)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,4,16", help="levels (1,4,16)")
    parser.add_argument("--requests-per-client", type=int, default=2, help="(2)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="(64)")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]

    from transformers import AutoTokenizer

    model_dir = prepare_bundled_model(load_settings().models_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    prompts = load_prompts()
    print(f"API benchmark: {model_dir.name}, greedy, {args.max_new_tokens} new tokens, "
          f"{args.requests_per_client} streaming chats per client; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ftapp-bench-api-") as tmp:
        home = Path(tmp) / "home"
        link_models(home, model_dir.parent)
        settings = Settings(home=home)
        settings.ensure_dirs()
        db = open_db(settings.db_path)
        try:
            promote(db, bundled_base_model(settings.models_dir), "base", "bench")
            _, secret = create_key(db, "bench", "bench")
        finally:
            db.close()
        port, vllm_port = free_port(), free_port()
        env = app_env(home, port, FTAPP_BACKEND="vllm", FTAPP_WORKER="0",
                      FTAPP_VLLM_PORT=str(vllm_port))  # fmt: skip
        log_path = Path(tmp) / "app.log"
        process = start_app(env, log_path)
        try:
            wait_until_up(f"http://127.0.0.1:{port}/", process, log_path, 120)
            wait_until_up(f"http://127.0.0.1:{vllm_port}/health", process, log_path, 600)
            direct = openai.OpenAI(base_url=f"http://127.0.0.1:{vllm_port}/v1", api_key="none",
                                   max_retries=0, timeout=600)  # fmt: skip
            through = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=secret,
                                    max_retries=0, timeout=600)  # fmt: skip
            base_name = direct.models.list().data[0].id
            for client, model in ((direct, base_name), (through, "production")):
                run_level(client, model, 1, 1, prompts, 8, count)  # warm-up: caches, kernels
            paths = ((direct, base_name), (through, "production"))
            rows = []
            for level in levels:
                pair = [
                    run_level(client, model, level, args.requests_per_client, prompts,
                              args.max_new_tokens, count)
                    for client, model in paths
                ]  # fmt: skip
                rows.append((level, *pair))
                print(f"  x{level:<3} direct {pair[0]['rate']:7.1f} tok/s, TTFT "
                      f"{pair[0]['ttft']:.2f} s · through ftapp {pair[1]['rate']:7.1f} tok/s, "
                      f"TTFT {pair[1]['ttft']:.2f} s", flush=True)  # fmt: skip
        except AppFailed as failed:
            raise SystemExit(str(failed)) from None
        finally:
            stop_app(process, 30)
        # Every request answered through ftapp is logged once (the warm-up and the levels):
        # the count of rows against the count of answers, none lost and none twice.
        answered = 1 + sum(through_row["requests"] for _, _, through_row in rows)
        db = open_db(settings.db_path)
        try:
            (logged,) = db.execute("SELECT COUNT(*) FROM production_requests "
                                   "WHERE key_name = 'bench'").fetchone()  # fmt: skip
        finally:
            db.close()
    print(f"\nlogged through ftapp: {logged} requests of {answered} answered")
    print("\n| concurrent chats | vLLM direct tok/s | through ftapp tok/s | ratio | TTFT p50 "
          "direct | TTFT p50 through ftapp |\n|---|---|---|---|---|---|")  # fmt: skip
    for level, direct_row, through_row in rows:
        print(f"| {level} | {direct_row['rate']:.1f} | {through_row['rate']:.1f} | "
              f"{through_row['rate'] / direct_row['rate']:.2f} | {direct_row['ttft']:.2f} s | "
              f"{through_row['ttft']:.2f} s |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
