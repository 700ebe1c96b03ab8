"""What the drift check costs on this machine: the base model's answers to the probe set, and
the scoring of one adapter against them, through ftapp's vLLM backend and through its
in-process fallback, in one run.

    .venv/bin/python benchmarks/bench_drift.py [--probes 240] [--workers 4] [--backends vllm,hf]

Both phases are what the web app's answer queue runs (evaluation/drift.py): the base model
answers every probe once, greedy, at most 64 new tokens, `--workers` at a time; then each
adapter or checkpoint is scored, two log-likelihoods per probe (the base model's, kept, and
the variant's). The adapter has random non-zero LoRA weights (bench_serve.make_adapter), so
the work is that of a trained one; its drift is printed as a check that the numbers are real.
vLLM runs first, is stopped, then the fallback runs, so the two never share the CPU. The
in-process fallback is the baseline: the ratio is its time over vLLM's. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench_serve import make_adapter

from ftapp.evaluation.drift import PROBE_SAMPLING, load_probes, variant_drift
from ftapp.models.bundled import prepare_bundled_model
from ftapp.names import BASE, MAX_LORA_RANK
from ftapp.serving.backend import Backend, ChatRequest, ServedModel
from ftapp.settings import load_settings


@dataclass(frozen=True)
class Cost:
    backend: str
    answers_seconds: float  # the base model's answers to every probe (once per base model)
    base_scores_seconds: float  # their likelihood under base (once)
    variant_seconds: float  # one variant scored on every probe (per adapter or checkpoint)
    drift: float | None


def measure(backend: Backend, adapter: ServedModel, probes: int, workers: int) -> Cost:
    prompts = [messages for messages, _ in load_probes(probes)]

    def answer(messages):
        return "".join(backend.stream_chat(ChatRequest(ServedModel(BASE), messages,
                                                       PROBE_SAMPLING)))  # fmt: skip

    answer(prompts[0])  # warm-up: caches, kernels
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(answer, prompts))
    answers_seconds = time.perf_counter() - started

    def likelihood(model: str, messages, turns):
        served = ServedModel(BASE) if model == BASE else adapter
        return backend.answer_likelihood(served, messages, turns)

    pairs = enumerate(zip(prompts, answers, strict=True))
    rows = [{"messages": m, "answer": a, "position": i, "logprob": None, "tokens": None}
            for i, (m, a) in pairs if a.strip()]  # fmt: skip
    likelihood(BASE, rows[0]["messages"], [{"role": "assistant", "content": rows[0]["answer"]}])
    started = time.perf_counter()
    for row in rows:
        score = likelihood(BASE, row["messages"], [{"role": "assistant", "content": row["answer"]}])
        row.update(logprob=score.logprob, tokens=score.tokens)
    base_seconds = time.perf_counter() - started
    likelihood(adapter.name, rows[0]["messages"], [{"role": "assistant", "content": "warm"}])
    started = time.perf_counter()
    drift = variant_drift(adapter.name, rows, likelihood)
    variant_seconds = time.perf_counter() - started
    cost = Cost(backend.name, answers_seconds, base_seconds, variant_seconds, drift.value.mean)
    print(f"  {cost.backend:<5} answers {answers_seconds:6.1f} s, base scores "
          f"{base_seconds:6.1f} s, one variant {variant_seconds:6.1f} s, drift "
          f"{drift.value.mean:.4f} nats/token over {drift.value.n} probes", flush=True)  # fmt: skip
    return cost


def run_vllm(model_dir: Path, adapter: ServedModel, args, tmp: Path) -> Cost:
    from ftapp.serving.vllm_backend import VllmBackend
    from ftapp.serving.vllm_server import VllmOptions, VllmServer

    server = VllmServer(VllmOptions(model_path=model_dir, log_path=tmp / "vllm.log",
                                    max_lora_rank=MAX_LORA_RANK, threads=args.threads))  # fmt: skip
    server.start()
    try:
        if not server.wait_ready(timeout=600):
            raise SystemExit(f"vLLM did not start: {server.status().detail}")
        return measure(VllmBackend(server=server), adapter, args.probes, args.workers)
    finally:
        server.stop()


def run_hf(model_dir: Path, adapter: ServedModel, args) -> Cost:
    from ftapp.serving.hf import HFBackend

    backend = HFBackend(model_dir, threads=args.threads)
    try:
        return measure(backend, adapter, args.probes, args.workers)
    finally:
        backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=240, help="(240: the whole set)")
    parser.add_argument("--workers", type=int, default=4, help="answers at once (4)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="(all cores)")
    parser.add_argument("--backends", default="vllm,hf", help="(vllm,hf)")
    parser.add_argument("--models-dir", type=Path, default=None, help="FTAPP_HOME/models")
    args = parser.parse_args(argv)
    model_dir = prepare_bundled_model(args.models_dir or load_settings().models_dir)
    print(f"drift benchmark: {model_dir.name}, {args.probes} probes, greedy, at most "
          f"{PROBE_SAMPLING.max_new_tokens} new tokens, {args.workers} workers; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")  # fmt: skip
    costs: dict[str, Cost] = {}
    with tempfile.TemporaryDirectory(prefix="ftapp-bench-drift-") as tmp:
        adapter = ServedModel("bench-adapter", make_adapter(model_dir, Path(tmp) / "a", 16))
        for name in [b.strip() for b in args.backends.split(",")]:
            costs[name] = (run_vllm(model_dir, adapter, args, Path(tmp)) if name == "vllm"
                           else run_hf(model_dir, adapter, args))  # fmt: skip
    print("\n| backend | base answers (once) | base scores (once) | per variant | total, one "
          "variant |\n|---|---|---|---|---|")  # fmt: skip
    for cost in costs.values():
        total = cost.answers_seconds + cost.base_scores_seconds + cost.variant_seconds
        print(f"| {cost.backend} | {cost.answers_seconds / 60:.1f} min | "
              f"{cost.base_scores_seconds / 60:.1f} min | {cost.variant_seconds / 60:.1f} min | "
              f"{total / 60:.1f} min |")  # fmt: skip
    if {"vllm", "hf"} <= set(costs):
        vllm, hf = costs["vllm"], costs["hf"]
        print(f"\nvLLM against the in-process fallback: answers "
              f"{hf.answers_seconds / vllm.answers_seconds:.2f}x, per variant "
              f"{hf.variant_seconds / vllm.variant_seconds:.2f}x faster")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
