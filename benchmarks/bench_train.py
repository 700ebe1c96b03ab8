"""Training throughput: non-padding tokens per second of the ftapp trainer beside a naive TRL
SFTTrainer run (its defaults: padded batches) on the same data, model and number of steps, with
model-FLOPs utilisation against a matmul peak measured in the same script.

    .venv/bin/python benchmarks/bench_train.py [--steps 10] [--batch-size 8] [--max-length 512]
        [--threads N] [--seed 0] [--rows 1000] [--runs baseline,ftapp,...]
        [--device cpu|cuda] [--model-dir DIR] [--random-init-shape 1b|tiny] [--json PATH]

The data is a seeded synthetic set of chats (a user prompt and an assistant answer, 30-300
tokens of content, about 65-320 as rendered by the chat template), the same rows for every run.
Each run trains the bundled model in its own child process (a fresh torch, accelerate and
thread state) and reports, through a TrainerCallback of this script, the time of every
optimizer step and the tokens of every batch the model saw: "real" tokens are those with
attention_mask 1 in a padded batch, and every token of a packed padding-free batch (it has no
padding). The first --skip steps (2) are warm-up and not counted.

Runs (SFT runs are compared with "baseline", DPO runs with "dpo baseline"):
- baseline: `SFTTrainer(model=PATH, args=SFTConfig(...), peft_config=LoraConfig(...))` with TRL
  1.16's defaults, except what the comparison needs (listed in the output);
- baseline variants, each with one of ftapp's changes;
- ftapp: `ftapp.training.trainer.train` as the worker runs it, with the "CPU default" preset;
- ftapp variants through the same function, with one config field changed;
- dpo baseline: `DPOTrainer(model=PATH, args=DPOConfig(...), peft_config=LoraConfig(...))` with
  TRL's defaults on pairs made from the same chats (the chosen answer is the chat's own, the
  rejected one the next chat's answer); ftapp dpo: train() with the "preference CPU default"
  preset (method dpo) on the same pairs.
Only the forwards that train count (with gradients on): DPO's reference forward (the adapter
disabled, no gradients) does not. MFU = 4 N x real tokens/s / measured peak (6 N for DPO, whose
reference forward adds 2 N a token), N = the base model's parameters (the tied embedding
matrix counted once, for the LM head's matmul). Nothing is asserted; see benchmarks/README.md.

On a GPU (--device cuda) the ftapp runs take the "GPU default" presets, the baseline trains on
the GPU, and MFU is against the card's dense bf16 peak from its datasheet (BF16_PEAKS, by the
name torch gives the card; a card not in the table is measured with a matmul). --model-dir
trains another model folder than the bundled one; --random-init-shape builds a model of that
shape with random weights and the tokenizer of the model folder (no download), for the speed
of a bigger model; --json writes the figures for benchmarks/gpu_check.sh's report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from bench_import import make_sentences, make_text
from transformers import TrainerCallback

from ftapp.models.bundled import prepare_bundled_model
from ftapp.records import DatasetVersion, Job, JobStatus
from ftapp.settings import load_settings
from ftapp.training.config import TrainConfig, preset

# The presets the ftapp runs train with on each device: (SFT, preference).
DEVICE_PRESETS = {
    "cpu": ("CPU default", "preference CPU default"),
    "cuda": ("GPU default", "preference GPU default"),
}
PRESET, DPO_PRESET = DEVICE_PRESETS["cpu"]
# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, FLOP/s, by a part of the
# name torch.cuda.get_device_name() gives (SXM H100: "NVIDIA H100 80GB HBM3"); the first match
# wins, so the longer names come first.
BF16_PEAKS = {
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H200 NVL": 835e12,
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
}
# Random-weight model shapes for --random-init-shape, Llama layout; the vocabulary is the
# tokenizer's. "1b": Llama-3.2-1B's (hidden 2048, 16 layers, 32 heads of 64, 8 KV heads, MLP
# 8192): 1.07 B parameters with the bundled tokenizer's 49,152 tokens. "tiny": the tests' tiny
# model, for a dry run.
RANDOM_SHAPES: dict[str, dict[str, Any]] = {
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, intermediate_size=8192, rope_theta=500000.0),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, intermediate_size=128),
}  # fmt: skip
TARGET = 2.0  # ftapp / baseline real tokens per second, from issue 23 (1.5 before it)
STARTED = time.perf_counter()  # a child's setup time counts from here (imports included)


@dataclass(frozen=True)
class RunSpec:
    # "trl" (a plain SFTTrainer), "ftapp" (ftapp.training.trainer.train), "trl dpo" (a plain
    # DPOTrainer) or "ftapp dpo" (train() with method dpo)
    kind: str
    changes: dict[str, Any]  # SFTConfig/DPOConfig fields for TRL, TrainConfig fields for ftapp
    note: str

    @property
    def is_dpo(self) -> bool:
        return self.kind.endswith("dpo")


# name -> what it runs; "baseline" is the denominator of every ratio.
RUNS: dict[str, RunSpec] = {
    "baseline": RunSpec("trl", {}, "TRL defaults: padded, grad ckpt, bf16 autocast, full loss"),
    "baseline fp32": RunSpec("trl", {"bf16": False}, "the baseline with bf16=False"),
    "baseline no ckpt": RunSpec(
        "trl", {"gradient_checkpointing": False}, "the baseline with gradient_checkpointing=False"
    ),
    "baseline packed": RunSpec(
        "trl", {"packing": True}, "the baseline with packing=True ('bfd', padding-free)"
    ),
    "ftapp": RunSpec("ftapp", {}, "ftapp.training.trainer.train, preset {preset!r}"),
    "ftapp fp32": RunSpec("ftapp", {"precision": "fp32"}, "ftapp with precision='fp32'"),
    "ftapp dropout 0.05": RunSpec("ftapp", {"lora_dropout": 0.05}, "ftapp with lora_dropout=0.05"),
    "ftapp trl head": RunSpec(
        "ftapp", {"lm_head": "trl"}, "ftapp with TRL's fused LM head (every position, tiles)"
    ),
    "ftapp 8 rows/fwd": RunSpec(
        "ftapp",
        {"batch_size": 8, "gradient_accumulation": 1},
        "ftapp with batch_size=8, gradient_accumulation=1 (8 packed rows a forward)",
    ),
    "dpo baseline": RunSpec(
        "trl dpo", {}, "TRL DPOTrainer defaults: 8 pairs a forward, padded, grad ckpt, bf16"
    ),
    "ftapp dpo": RunSpec("ftapp dpo", {}, "ftapp.training.trainer.train, preset {dpo_preset!r}"),
    "ftapp dpo trl head": RunSpec(
        "ftapp dpo", {"lm_head": "trl"}, "ftapp dpo with TRL's fused LM head"
    ),
    "ftapp dpo 1 pair/fwd": RunSpec(
        "ftapp dpo",
        {"batch_size": 1, "gradient_accumulation": 8},
        "ftapp dpo with batch_size=1, gradient_accumulation=8 (1 pair a forward)",
    ),
}


# --- data --------------------------------------------------------------------------------


def make_rows(n_rows: int, seed: int) -> list[dict[str, Any]]:
    """Seeded chats: about 30-300 tokens of content, a prompt taking 15-50 % of it."""
    rng = random.Random(seed)
    sentences = make_sentences(rng)
    rows = []
    for _ in range(n_rows):
        tokens = rng.randint(30, 300)
        prompt_share = rng.uniform(0.15, 0.5)
        # About 1.3 tokens a word for this vocabulary; whole sentences overshoot a little.
        prompt = make_text(rng, sentences, max(3, round(tokens * prompt_share / 1.3)))
        answer = make_text(rng, sentences, max(3, round(tokens * (1 - prompt_share) / 1.3)))
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        rows.append({"messages": messages, "split": "train"})
    return rows


def make_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Preference rows as a frozen version holds them: each chat's answer is the chosen one,
    the next chat's answer the rejected one (an answer to another question, of a like length)."""
    pairs = []
    for i, row in enumerate(rows):
        other = rows[(i + 1) % len(rows)]["messages"][-1]
        pairs.append({**row, "rejected": [dict(other)], "label": None, "tools": None})
    return pairs


def rendered_lengths(rows: list[dict[str, Any]], model_dir: Path) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return [
        len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=False))
        for r in rows
    ]


# --- measuring inside a run ----------------------------------------------------------------


class StepMeter(TrainerCallback):
    """A TrainerCallback that time-stamps each optimizer step and counts the tokens of each
    batch at the model's input (a forward pre-hook), attributing them to the step under way."""

    def __init__(self) -> None:
        self.state: Any = None
        self.step_end: dict[int, float] = {}
        self.tokens: dict[int, dict[str, int]] = {}
        self.flags: dict[str, Any] = {}
        self.handles: list[Any] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        self.state = state
        self.step_end[state.global_step] = time.perf_counter()
        self.handles.append(model.register_forward_pre_hook(self._count, with_kwargs=True))
        embeddings = model.get_input_embeddings()
        self.handles.append(embeddings.register_forward_hook(self._check_autocast))
        self.flags["gradient_checkpointing"] = bool(getattr(model, "is_gradient_checkpointing", 0))
        self.flags["weights dtype"] = str(embeddings.weight.dtype).removeprefix("torch.")
        self.flags["attention"] = model.config._attn_implementation
        self.flags["threads"] = torch.get_num_threads()
        self.flags["device"] = str(embeddings.weight.device)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if torch.cuda.is_initialized():  # GPU work is queued: the step ends when it is done
            torch.cuda.synchronize()
        self.step_end[state.global_step] = time.perf_counter()

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        for handle in self.handles:
            handle.remove()

    def _count(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        if not module.training or not torch.is_grad_enabled():  # DPO's reference forward
            return
        input_ids = kwargs["input_ids"]
        mask = kwargs.get("attention_mask")
        labels = kwargs.get("labels")
        position_ids = kwargs.get("position_ids")
        if mask is not None:  # padded batch
            real = int(mask.sum())
            sequences = input_ids.shape[0]
        else:  # padding-free: one flat row, each sequence starting at position 0
            real = input_ids.numel()
            sequences = int((position_ids == 0).sum()) if position_ids is not None else 1
        self.flags.setdefault("batches", "padded" if mask is not None else "padding-free")
        self.flags["longest row"] = max(self.flags.get("longest row", 0), input_ids.shape[-1])
        counts = self.tokens.setdefault(
            self.state.global_step + 1,
            {"real": 0, "input": 0, "loss": 0, "sequences": 0, "forwards": 0},
        )
        counts["forwards"] += 1
        counts["real"] += real
        counts["input"] += input_ids.numel()
        counts["loss"] += int((labels != -100).sum()) if labels is not None else real
        counts["sequences"] += sequences

    def _check_autocast(self, module: Any, args: tuple, output: Any) -> None:
        if "autocast" not in self.flags and module.training:
            device = module.weight.device.type
            on = torch.is_autocast_enabled(device)
            dtype = torch.get_autocast_dtype(device) if on else None
            self.flags["autocast"] = str(dtype).removeprefix("torch.") if on else "off"

    def result(self) -> dict[str, Any]:
        if torch.cuda.is_initialized():
            self.flags["peak GPU memory GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        return {
            "step_end": {str(k): v for k, v in self.step_end.items()},
            "tokens": {str(k): v for k, v in self.tokens.items()},
            "flags": self.flags,
        }


def bench_config(args: argparse.Namespace, dpo: bool = False, **changes: Any) -> TrainConfig:
    """The ftapp config of every run: the device's preset (SFT or DPO) at this benchmark's
    size, no saves, no evaluation (so no early stopping either)."""
    values = dict(
        max_steps=args.steps,
        max_length=args.max_length,
        eval_steps=0,
        save_steps=0,
        early_stopping_patience=0,
        threads=args.threads,
        seed=args.seed,
    )
    sft_preset, dpo_preset = DEVICE_PRESETS[args.device]
    return preset(dpo_preset if dpo else sft_preset, "bench@v1", **{**values, **changes})


def run_ftapp(spec: RunSpec, args: argparse.Namespace, rows: list, model_dir: Path, out: Path):
    import ftapp.training.trainer as trainer_module

    changes = dict(spec.changes)
    if changes.pop("lm_head", None) == "trl":
        # As before ftapp.training.lm_head: TRL's fused head scores every position.
        trainer_module.use_label_only_lm_head = lambda model: False
    config = bench_config(args, spec.is_dpo, **changes)
    now = "2026-01-01T00:00:00Z"
    job = Job(
        id=1, name="bench", status=JobStatus.RUNNING, config=config.to_dict(),
        dataset_version_id=1, base_model=config.base_model, output_dir=str(out / "job"),
        log_path=str(out / "job.log"), device=None, worker_id=None, child_pid=os.getpid(),
        attempts=1, is_cancel_requested=False, step=0, total_steps=None, epoch=None, error=None,
        metrics=None, created_at=now, created_by="bench", started_at=now, heartbeat_at=now,
        finished_at=None,
    )  # fmt: skip
    dataset_version = DatasetVersion(
        id=1, dataset_id=1, dataset="bench", version=1, content_hash="", n_examples=len(rows),
        n_train=len(rows), n_validation=0, n_test=0, note="", created_at=now, created_by="bench",
    )  # fmt: skip
    meter = StepMeter()
    outcome = trainer_module.train(job, config, dataset_version, rows, model_dir, [meter])
    return meter, {"machine": outcome["machine"], "config": changes}


def run_trl(spec: RunSpec, args: argparse.Namespace, rows: list, model_dir: Path, out: Path):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    config = bench_config(args)
    # ftapp's train() sets these two; a plain script would get the same from torch's defaults
    # on this machine (threads = cores) and from Trainer (seed), but set them for parity.
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    comparable = baseline_settings(config, args.batch_size, args.device)
    sft = SFTConfig(output_dir=str(out / "trl"), **comparable, **spec.changes)
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    meter = StepMeter()
    trainer = SFTTrainer(
        model=str(model_dir),
        args=sft,
        train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in rows]),
        peft_config=lora,
        callbacks=[meter],
    )
    trainer.train()
    return meter, {"sft": {**comparable, **spec.changes}, "bf16": sft.bf16}


def run_trl_dpo(spec: RunSpec, args: argparse.Namespace, rows: list, model_dir: Path, out: Path):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from ftapp.training.methods import training_rows

    config = bench_config(args, dpo=True)
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    # The same pairs a step as the ftapp run (its batch size times its accumulation).
    pairs = config.batch_size * config.gradient_accumulation
    comparable = baseline_settings(config, pairs, args.device)
    dpo = DPOConfig(output_dir=str(out / "trl"), **comparable, **spec.changes)
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules="all-linear",
                      task_type="CAUSAL_LM")  # fmt: skip
    meter = StepMeter()
    trainer = DPOTrainer(
        model=str(model_dir),
        args=dpo,
        train_dataset=Dataset.from_list(training_rows("dpo", rows, "train")),
        peft_config=lora,
        callbacks=[meter],
    )
    trainer.train()
    return meter, {"dpo": {**comparable, **spec.changes}, "bf16": dpo.bf16}


def baseline_settings(config: TrainConfig, batch_size: int, device: str) -> dict[str, Any]:
    """The SFTConfig fields the baseline sets; everything else is TRL's default."""
    return {
        "max_steps": config.max_steps,
        "per_device_train_batch_size": batch_size,
        "learning_rate": config.learning_rate,
        "max_length": config.max_length,
        "seed": config.seed,
        "use_cpu": device == "cpu",
        "report_to": "none",
        "save_strategy": "no",
    }


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def child_main(args: argparse.Namespace) -> int:
    """One run in this process; its result as JSON in --result."""
    spec = RUNS[args.one]
    model_dir = Path(args.model_dir)
    rows = make_rows(args.rows, args.seed)
    if spec.is_dpo:
        rows = make_pairs(rows)
    out = Path(args.result).parent / slug(args.one)
    load_start = os.getloadavg()[0]
    runner = {"trl": run_trl, "ftapp": run_ftapp, "trl dpo": run_trl_dpo,
              "ftapp dpo": run_ftapp}[spec.kind]  # fmt: skip
    meter, extra = runner(spec, args, rows, model_dir, out)
    result = {
        "name": args.one,
        "started": STARTED,
        "finished": time.perf_counter(),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        **meter.result(),
        **extra,
    }
    Path(args.result).write_text(json.dumps(result))
    return 0


# --- the parent: peak, runs, report ----------------------------------------------------------


def matmul_peak(
    dtype: torch.dtype, threads: int, n: int = 2048, repeat: int = 8, device: str = "cpu"
) -> float:
    """FLOP/s of the fastest of `repeat` n x n x n matrix products (after two warm-ups)."""
    torch.set_num_threads(threads)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def datasheet_peak(device_name: str) -> float | None:
    """The card's dense bf16 peak from BF16_PEAKS, or None for a card not in it."""
    return next((peak for part, peak in BF16_PEAKS.items() if part in device_name), None)


def measure_peaks(args: argparse.Namespace) -> dict[str, Any]:
    """The peaks MFU is reckoned against: on CPU fp32 and bf16 matmuls measured here; on a GPU
    the datasheet's dense bf16 peak (the measured matmul beside it, and instead of it for a
    card the table lacks) and a measured fp32 matmul."""
    if args.device == "cpu":
        return {
            "fp32": matmul_peak(torch.float32, args.threads),
            "bf16": matmul_peak(torch.bfloat16, args.threads),
            "source": "measured",
        }
    measured = matmul_peak(torch.bfloat16, args.threads, n=8192, repeat=10, device="cuda")
    sheet = datasheet_peak(torch.cuda.get_device_name())
    return {
        "fp32": matmul_peak(torch.float32, args.threads, n=8192, repeat=10, device="cuda"),
        "bf16": sheet or measured,
        "bf16 measured": measured,
        "source": "datasheet" if sheet else "measured",
    }


def random_model(folder: Path, tokenizer_dir: Path, config: Any) -> Path:
    """A model of `config`'s shape with random weights (seed 0, saved in bf16) and the
    tokenizer and chat template of `tokenizer_dir`, saved in `folder`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def shape_config(shape: str, tokenizer_dir: Path) -> Any:
    """The Llama config of a RANDOM_SHAPES entry with the tokenizer's vocabulary and tokens."""
    from transformers import AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    return LlamaConfig(
        **RANDOM_SHAPES[shape], vocab_size=len(tokenizer), max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip


@dataclass
class Figures:
    name: str
    steps: int
    sequences: int
    real: int
    input: int
    loss: int
    seconds: float
    step_seconds: list[float]  # the timed steps
    all_steps: list[float]  # every step, warm-up included
    load_start: float
    load_end: float
    setup: float  # process start to the first step (imports, model, data preparation)
    warmup: float  # the untimed first steps
    finish: float  # after the last step (saving the adapter)
    forwards: int
    peak_rss: int
    flags: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.real / self.seconds

    @property
    def padding_share(self) -> float:
        return 1 - self.real / self.input


def figures(result: dict[str, Any], skip: int) -> Figures:
    ends = {int(k): v for k, v in result["step_end"].items()}
    tokens = {int(k): v for k, v in result["tokens"].items()}
    last = max(ends)
    timed = range(skip + 1, last + 1)
    total = {key: sum(tokens[s][key] for s in timed) for key in tokens[last]}
    return Figures(
        name=result["name"],
        steps=len(timed),
        sequences=total["sequences"],
        real=total["real"],
        input=total["input"],
        loss=total["loss"],
        seconds=ends[last] - ends[skip],
        step_seconds=[ends[s] - ends[s - 1] for s in timed],
        all_steps=[ends[s] - ends[s - 1] for s in range(1, last + 1)],
        load_start=result["load_start"],
        load_end=result["load_end"],
        setup=ends[0] - result["started"],
        warmup=ends[skip] - ends[0],
        finish=result["finished"] - ends[last],
        forwards=total["forwards"],
        peak_rss=result["peak_rss"],
        flags=result["flags"],
    )


def run_child(name: str, args: argparse.Namespace, model_dir: Path, workdir: Path) -> dict:
    result = workdir / f"{slug(name)}.json"
    log = workdir / f"{slug(name)}.log"
    command = [
        sys.executable, __file__, "--one", name, "--result", str(result),
        "--model-dir", str(model_dir), "--steps", str(args.steps),
        "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
        "--threads", str(args.threads), "--seed", str(args.seed), "--rows", str(args.rows),
        "--device", args.device,
    ]  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    if args.device == "cpu":  # ftapp's train() takes a GPU wherever it sees one
        env["CUDA_VISIBLE_DEVICES"] = ""
    with log.open("w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        tail = log.read_text()[-4000:]
        raise SystemExit(f"run {name!r} failed ({done.returncode}):\n{tail}")
    return json.loads(result.read_text())


def describe(fig: Figures, spec: RunSpec, device: str = "cpu") -> list[str]:
    """What the run did, as seen from inside the trainer."""
    flags = fig.flags
    sft_preset, dpo_preset = DEVICE_PRESETS[device]
    memory = f"peak memory (RSS) {fig.peak_rss / 2**30:.1f} GiB"
    if "peak GPU memory GiB" in flags:
        memory += f", GPU {flags['peak GPU memory GiB']} GiB on {flags.get('device')}"
    loss = {"ftapp": "assistant only", "trl": "full sequence"}.get(spec.kind, "DPO's, on pairs")
    ckpt = "on" if flags.get("gradient_checkpointing") else "off"
    steps = " ".join(f"{seconds:.1f}" for seconds in fig.all_steps)
    return [
        spec.note.format(preset=sft_preset, dpo_preset=dpo_preset),
        f"{flags.get('batches')} batches, rows up to {flags.get('longest row')} tokens, "
        f"{fig.forwards // fig.steps} forward(s) a step; grad ckpt {ckpt}; autocast "
        f"{flags.get('autocast')}; weights {flags.get('weights dtype')}",
        f"loss on {loss}; attention {flags.get('attention')}; {flags.get('threads')} threads; "
        f"{memory}",
        f"setup {fig.setup:.1f} s, warm-up steps {fig.warmup:.1f} s, timed steps median "
        f"{statistics.median(fig.step_seconds):.2f} s, after the last step {fig.finish:.1f} s",
        f"seconds of each step: {steps}",
    ]


def baseline_of(run: Figures, runs: list[Figures]) -> Figures:
    """The run `run`'s ratio is against: the baseline of its family (SFT or DPO), else the
    family's first run."""
    dpo = RUNS[run.name].is_dpo
    family = [r for r in runs if RUNS[r.name].is_dpo == dpo]
    return next((r for r in family if r.name in ("baseline", "dpo baseline")), family[0])


def mfu(run: Figures, n_params: int, peaks: dict[str, Any]) -> float:
    """Model-FLOPs utilisation: 4 N (DPO: 6 N) FLOPs a real token over the peak of the run's
    precision (bf16 for runs with bf16 autocast or bf16 weights)."""
    bf16 = "bfloat16" in (run.flags.get("autocast"), run.flags.get("weights dtype"))
    peak = peaks["bf16"] if bf16 else peaks["fp32"]
    flops_per_token = (6 if RUNS[run.name].is_dpo else 4) * n_params
    return flops_per_token * run.rate / peak


def print_report(
    runs: list[Figures], n_params: int, peaks: dict[str, Any], args: argparse.Namespace
) -> None:
    header = (
        f"{'run':<20} {'steps':>5} {'seqs':>5} {'real tok':>8} {'pad %':>5} {'loss tok':>8} "
        f"{'seconds':>7} {'real tok/s':>10} {'ratio':>6} {'MFU %':>5} {'load':>9}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        print(
            f"{run.name:<20} {run.steps:>5} {run.sequences:>5} {run.real:>8,} "
            f"{100 * run.padding_share:>5.1f} {run.loss:>8,} {run.seconds:>7.1f} "
            f"{run.rate:>10.1f} {run.rate / baseline_of(run, runs).rate:>5.2f}x "
            f"{100 * mfu(run, n_params, peaks):>5.1f} "
            f"{run.load_start:>4.2f}-{run.load_end:<4.2f}"
        )
    peak_name = "measured matmul peak" if peaks["source"] == "measured" else "datasheet peak"
    print(
        f"{'fastest of ' + str(args.repeat) + ' runs each; ' if args.repeat > 1 else ''}"
        f"steps {args.skip + 1}-{args.steps} of each run are timed (the first {args.skip} are"
        " warm-up); seqs: chats the model saw in them;\nreal tok: tokens that are not padding;"
        " pad %: padding share of the input tokens; loss tok: tokens with a label;\n"
        f"ratio: real tok/s / the baseline's (DPO runs: the dpo baseline's); MFU: 4 N x real"
        f" tok/s (DPO: 6 N)\n/ {peak_name} (bf16 peak for runs in bf16, else"
        f" fp32), N = {n_params / 1e6:.1f} M;"
        " load: 1-minute load average at the start and end of the run"
    )
    ftapp = next((r for r in runs if r.name == "ftapp"), None)
    baseline = next((r for r in runs if r.name == "baseline"), None)
    if ftapp is not None and baseline is not None:
        ratio = ftapp.rate / baseline.rate
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(
            f"\ntarget (the issue): ftapp at least {TARGET}x the baseline: {verdict} ({ratio:.2f}x)"
        )
    print("\nwhat each run did (as seen from inside the trainer):")
    for run in runs:
        for i, line in enumerate(describe(run, RUNS[run.name], args.device)):
            print(f"  {run.name if i == 0 else '':<20} {line}")


def write_json(
    path: Path, runs: list[Figures], n_params: int, peaks: dict[str, Any], machine: dict
) -> None:
    """The figures as JSON, for benchmarks/gpu_check.sh's report."""
    rows = [
        {
            "name": run.name,
            "steps": run.steps,
            "real_tokens": run.real,
            "seconds": run.seconds,
            "tokens_per_s": run.rate,
            "ratio": run.rate / baseline_of(run, runs).rate,
            "mfu": mfu(run, n_params, peaks),
            "padding_share": run.padding_share,
            "flags": run.flags,
        }
        for run in runs
    ]
    data = {**machine, "parameters": n_params, "peaks": peaks, "runs": rows}
    path.write_text(json.dumps(data, indent=2))


def print_settings(config: TrainConfig, batch_size: int, device: str = "cpu") -> None:
    fields = ", ".join(baseline_settings(config, batch_size, device))
    sft_preset, dpo_preset = DEVICE_PRESETS[device]
    precision = f"bf16 autocast on {'this CPU' if device == 'cpu' else 'the GPU'}; fp32 weights"
    print(
        f"\nbaseline: SFTTrainer(model=PATH, args=SFTConfig({fields}"
        ", output_dir),\n  peft_config=LoraConfig(r, lora_alpha, lora_dropout, target_modules="
        "'all-linear', task_type)), each the same value as the ftapp run;\n  everything else"
        " TRL 1.16's defaults: packing=False (padded batches), gradient_checkpointing=True,\n"
        f"  bf16=True (TRL's default when fp16 is off: {precision}),"
        " assistant_only_loss=False,\n  lr_scheduler_type='linear', warmup 0, logging_steps=10,"
        " tokenizer from the model folder\nftapp: train() with preset"
        f" {sft_preset!r} + max_steps, eval_steps=0, save_steps=0: packing='bfd' (padding-free),\n"
        f"  gradient_checkpointing={config.gradient_checkpointing}, precision 'auto' (bf16"
        " here), assistant-only"
        f" loss (training\n  template twin), lr_scheduler_type={config.scheduler!r},"
        f" warmup_ratio={config.warmup_ratio}, logging_steps=1; LoRA r={config.lora_rank},"
        f" alpha={config.lora_alpha},\n  dropout={config.lora_dropout}, all-linear,"
        f" lr={config.learning_rate};\n  batch_size={config.batch_size} packed row(s) of"
        f" max_length tokens a forward, gradient_accumulation={config.gradient_accumulation};"
        f" the baseline: {batch_size} chats a step"
    )
    dpo = preset(dpo_preset, "bench@v1")
    pairs = dpo.batch_size * dpo.gradient_accumulation
    print(
        "dpo baseline: DPOTrainer(model=PATH, args=DPOConfig(the same fields, "
        f"per_device_train_batch_size={pairs}),\n  peft_config=LoraConfig(the same)); TRL's"
        " defaults otherwise: gradient_checkpointing=True, bf16=True,\n  padded batches of"
        f" {pairs} pairs (chosen and rejected: {2 * pairs} rows a forward), the reference"
        " forward with the adapter\n  disabled\nftapp dpo: train() with preset"
        f" {dpo_preset!r} + max_steps: batch_size={dpo.batch_size} pairs a forward,"
        f" gradient_accumulation={dpo.gradient_accumulation},\n  gradient_checkpointing="
        f"{dpo.gradient_checkpointing}, lora_dropout={dpo.lora_dropout},"
        f" lr={dpo.learning_rate}, beta={dpo.beta}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run (10)")
    parser.add_argument("--skip", type=int, default=2, help="warm-up steps not timed (2)")
    parser.add_argument("--batch-size", type=int, default=8, help="baseline chats a step (8)")
    parser.add_argument(
        "--max-length", type=int, default=None, help="max_length (512; on cuda the preset's)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="(all cores)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed (0)")
    parser.add_argument("--rows", type=int, default=1000, help="chats in the data set (1000)")
    parser.add_argument(
        "--runs",
        default="baseline,ftapp",
        help=f"comma-separated, or 'all': {', '.join(RUNS)} (baseline,ftapp)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of all the runs; the fastest is shown (1)"
    )
    parser.add_argument("--models-dir", type=Path, default=None, help="FTAPP_HOME/models")
    parser.add_argument("--device", choices=sorted(DEVICE_PRESETS), default="cpu", help="(cpu)")
    parser.add_argument(
        "--model-dir", help="a model folder to train instead of the bundled model (its tokenizer "
        "is the random model's with --random-init-shape)"
    )  # fmt: skip
    parser.add_argument(
        "--random-init-shape", choices=sorted(RANDOM_SHAPES), default=None,
        help="train a model of this shape with random weights, built in a temporary folder",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.max_length is None:
        args.max_length = 512 if args.device == "cpu" else preset("GPU default", "x@v1").max_length
    if args.one:
        return child_main(args)
    names = list(RUNS) if args.runs == "all" else [n.strip() for n in args.runs.split(",")]
    unknown = [n for n in names if n not in RUNS]
    if unknown or args.steps <= args.skip:
        parser.error(f"unknown run {unknown[0]!r}" if unknown else "--steps must exceed --skip")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")

    if args.model_dir:
        source = Path(args.model_dir)
    else:
        source = prepare_bundled_model(args.models_dir or load_settings().models_dir)
    with tempfile.TemporaryDirectory(prefix="ftapp-bench-train-") as tmp:
        model_dir = source
        if args.random_init_shape:
            config = shape_config(args.random_init_shape, source)
            folder = Path(tmp) / f"random-{args.random_init_shape}"
            model_dir = random_model(folder, source, config)
        results, n_params, peaks, machine = run_all(args, names, model_dir, Path(tmp))
    if args.random_init_shape:
        machine["model"] = f"random weights, {args.random_init_shape} shape"
    print()
    print_report(results, n_params, peaks, args)
    if args.json:
        write_json(args.json, results, n_params, peaks, machine)
    return 0


def run_all(
    args: argparse.Namespace, names: list[str], model_dir: Path, tmp: Path
) -> tuple[list[Figures], int, dict[str, Any], dict[str, Any]]:
    """Print what is measured, run every run (round-robin, --repeat rounds); the fastest of
    each, the model's parameter count, the peaks and a description of the machine."""
    from transformers import AutoModelForCausalLM

    n_params = AutoModelForCausalLM.from_pretrained(str(model_dir)).num_parameters()
    rows = make_rows(args.rows, args.seed)
    lengths = rendered_lengths(rows, model_dir)
    cpu = _cpu_name()
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else None
    print(
        f"training benchmark: {model_dir.name} ({n_params / 1e6:.1f} M parameters), "
        f"{args.rows:,} synthetic chats (seed {args.seed}), {args.steps} steps per run, "
        f"baseline batch size {args.batch_size}, max_length {args.max_length}"
        + (f", on {gpu}" if gpu else "")
    )
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu}), {args.threads} threads, Python "
        f"{platform.python_version()}, torch {torch.__version__}, transformers "
        f"{version('transformers')}, trl {version('trl')}, peft {version('peft')}, accelerate "
        f"{version('accelerate')}; load average {os.getloadavg()[0]:.2f} at start"
    )
    print(
        f"data: tokens per chat as rendered by the chat template: min {min(lengths)}, median "
        f"{statistics.median(lengths):.0f}, mean {statistics.mean(lengths):.1f}, "
        f"max {max(lengths)} ({sum(lengths):,} in all)"
    )
    peaks = measure_peaks(args)
    if args.device == "cpu":
        print(
            f"peak: measured 2048x2048x2048 torch matmul on {args.threads} threads, fastest of "
            f"8 (not a datasheet figure): fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, bf16 "
            f"{peaks['bf16'] / 1e9:.1f} GFLOP/s"
        )
    else:
        print(
            f"peak: {peaks['source']} dense bf16 {peaks['bf16'] / 1e12:.0f} TFLOP/s for {gpu}; "
            f"measured 8192x8192x8192 torch matmul, fastest of 10: bf16 "
            f"{peaks['bf16 measured'] / 1e12:.0f} TFLOP/s, fp32 {peaks['fp32'] / 1e12:.0f} TFLOP/s"
        )
    print(
        f"MFU convention: 4 N FLOPs per real token for LoRA (forward 2N, backward to the "
        f"activations 2N, no weight\n  gradients of the frozen base); N = {n_params:,}, all of "
        "the base model's parameters with the tied\n  embedding/LM-head matrix counted once (its"
        " matmul in the head); attention's sequence-length term and\n  the LoRA matrices' own"
        " FLOPs (under 5 %) are left out; gradient checkpointing's recomputed forward is not"
        " counted"
    )
    print_settings(bench_config(args), args.batch_size, args.device)
    print()

    best: dict[str, Figures] = {}
    # Round-robin, so a change in the machine's other load falls on every kind of run.
    for round_ in range(args.repeat):
        for name in names:
            start = time.perf_counter()
            print(f"round {round_ + 1}: {name} ... ", end="", flush=True)
            fig = figures(run_child(name, args, model_dir, tmp), args.skip)
            print(
                f"{time.perf_counter() - start:.0f} s, {fig.rate:.1f} real tok/s, load "
                f"{fig.load_start:.2f}-{fig.load_end:.2f}",
                flush=True,
            )
            if name not in best or fig.rate > best[name].rate:
                best[name] = fig
    machine = {
        "device": args.device,
        "device_name": gpu or cpu,
        "model": model_dir.name,
        "max_length": args.max_length,
        "baseline_batch_size": args.batch_size,
    }
    return [best[name] for name in names], n_params, peaks, machine


def _cpu_name() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), "unknown CPU")  # fmt: skip
    features = [f for f in ("avx512_bf16", "amx_bf16") if f in info]
    return f"{name}, {'+'.join(features) or 'no bf16 instructions'}"


if __name__ == "__main__":
    sys.exit(main())
