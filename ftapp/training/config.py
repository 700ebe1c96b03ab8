"""The training job config: one frozen dataclass, saved as YAML next to every adapter.

The same schema comes from the Train tab and from `ftapp train CONFIG.yaml`. `check_config`
refuses a config that can't work (missing dataset version, empty train split, rank above the
serving limit, an unreachable model) before anything is queued, naming the field.

A job trains with one method: `sft` on conversations, or `dpo`, `orpo` or `kto` on a
preference version, each through TRL's own trainer. The preference fields (beta, loss_type,
label_smoothing, the KTO weights) keep TRL's defaults; only the learning rate differs, since
TRL's 1e-6 is meant for full fine-tuning and a LoRA adapter needs more.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

import yaml

from ftapp.errors import ValidationError
from ftapp.names import MAX_LORA_RANK

# vLLM is started with --max-lora-rank equal to this: a larger rank could not be served.
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
PRECISIONS = ("auto", "fp32", "bf16")
QUANTIZATIONS = ("none", "4bit")
METHODS = ("sft", "dpo", "orpo", "kto")
RUNNERS = ("local", "ray")
PREFERENCE_METHODS = ("dpo", "orpo", "kto")
# The loss types offered per method, TRL's default first ("" in a config means that one).
# DPO's 'robust' and 'sigmoid' with label_smoothing are the ones for noisy votes.
LOSS_TYPES: dict[str, tuple[str, ...]] = {
    "dpo": ("sigmoid", "robust", "ipo", "hinge", "exo_pair", "bco_pair", "apo_zero", "apo_down",
            "sppo_hard", "nca_pair", "sigmoid_norm"),
    "kto": ("kto", "apo_zero_unpaired"),
}  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    dataset_version: str  # "NAME@v3"
    base_model: str = "SmolLM2-135M-Instruct"
    name: str = ""  # the adapter's name; default "<dataset>-v<version>-job<id>"
    method: str = "sft"  # sft | dpo | orpo | kto
    # An adapter or checkpoint to continue training (its LoRA settings are kept); "" = base.
    start_adapter: str = ""
    # LoRA
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"  # or a comma-separated list such as "q_proj,v_proj"
    # Optimisation
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = 0  # 0: train for `epochs`
    # Wall-clock budget: training stops at the next step after it and keeps its adapter.
    time_limit_minutes: float = 0.0  # 0: no limit
    batch_size: int = 8
    gradient_accumulation: int = 1
    max_length: int = 1024
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    seed: int = 0
    # Evaluation, checkpoints, early stopping (0 = off)
    eval_steps: int = 50
    save_steps: int = 50
    early_stopping_patience: int = 0
    # Loss on the assistant answers only (the usual choice); False trains on every token.
    assistant_only_loss: bool = True
    # Preference methods (TRL's defaults). beta: how far DPO/KTO may move from the reference
    # (the starting point with this training disabled); ORPO's weight of its odds-ratio term.
    beta: float = 0.1
    loss_type: str = ""  # "": the method's default (dpo: sigmoid, kto: kto)
    label_smoothing: float = 0.0  # DPO: the share of votes taken to be flipped (noisy labels)
    desirable_weight: float = 1.0  # KTO: weight of the good answers' loss
    undesirable_weight: float = 1.0  # KTO: weight of the bad answers' loss
    # Machine
    precision: str = "auto"  # auto: bf16 where the hardware supports it
    quantization: str = "none"  # "4bit": QLoRA, CUDA with bitsandbytes only
    gradient_checkpointing: bool = False  # slower on CPU; saves memory on GPU
    threads: int = 0  # CPU threads for the training process; 0: all cores
    # Where it trains: "local" (this machine) or "ray" (a Ray cluster: ray_address, or
    # FTAPP_RAY_ADDRESS when empty), data parallel over num_workers Ray Train workers.
    runs_on: str = "local"
    ray_address: str = ""
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # above 0: each worker trains on a GPU (use_gpu)

    @property
    def is_preference(self) -> bool:
        return self.method in PREFERENCE_METHODS

    @property
    def loss(self) -> str:
        """The loss type the trainer is given: the config's, or the method's default."""
        return self.loss_type or LOSS_TYPES.get(self.method, ("",))[0]

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # The CPU presets train one packed row of max_length tokens per forward pass and reach the
    # batch through gradient accumulation: a padding-free batch of several rows is one long
    # sequence to CPU attention (quadratic in its length), so more rows a pass is slower here.
    # LoRA dropout 0 skips PEFT's second input copy a layer; benchmarks/bench_train.py measured
    # both (2.5x the TRL-defaults baseline together, 0.9x without them).
    # A minute or two on a laptop CPU: enough to see the loss fall and get a servable adapter.
    "quick CPU demo": dict(
        lora_rank=8, lora_alpha=16, lora_dropout=0.0, max_steps=30, batch_size=1,
        gradient_accumulation=4, max_length=256, eval_steps=10, save_steps=10,
        learning_rate=3e-4, warmup_ratio=0.0,
    ),
    "CPU default": dict(
        lora_rank=16, lora_alpha=32, lora_dropout=0.0, epochs=1.0, batch_size=1,
        gradient_accumulation=8, max_length=512, eval_steps=25, save_steps=25,
    ),
    "GPU default": dict(
        lora_rank=16, lora_alpha=32, epochs=2.0, batch_size=16, max_length=2048,
        eval_steps=100, save_steps=100, gradient_checkpointing=True, early_stopping_patience=3,
    ),
    # Preference tuning (DPO, ORPO, KTO) wants a lower learning rate than SFT: 5e-5 for a LoRA
    # adapter over a whole dataset here (TRL's own 1e-6 is for full fine-tuning). The quick
    # demo has 30 steps to show an effect: at 5e-5 the margin on held-out pairs of the tests'
    # "Ahoy!" preference moved but stayed negative; at 2e-4 greedy answers took the trait
    # (tests/training/test_preference_traits.py). Two pairs a forward pass: KTO estimates its
    # KL term across a batch, so it needs two or more.
    "preference quick CPU demo": dict(
        method="dpo", lora_rank=8, lora_alpha=16, lora_dropout=0.0, max_steps=30, batch_size=2,
        gradient_accumulation=2, max_length=256, eval_steps=10, save_steps=10,
        learning_rate=2e-4, warmup_ratio=0.0,
    ),
    "preference CPU default": dict(
        method="dpo", lora_rank=16, lora_alpha=32, lora_dropout=0.0, epochs=1.0, batch_size=2,
        gradient_accumulation=4, max_length=512, eval_steps=25, save_steps=25,
        learning_rate=5e-5,
    ),
    "preference GPU default": dict(
        method="dpo", lora_rank=16, lora_alpha=32, epochs=1.0, batch_size=8,
        gradient_accumulation=2, max_length=2048, eval_steps=100, save_steps=100,
        learning_rate=5e-6, gradient_checkpointing=True,
    ),
}  # fmt: skip


def preset(name: str, dataset_version: str, **overrides: Any) -> TrainConfig:
    if name not in PRESETS:
        raise ValidationError(f"preset must be one of {', '.join(PRESETS)}; got {name!r}")
    return config_from_dict({"dataset_version": dataset_version, **PRESETS[name], **overrides})


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A config from loose values (YAML, a form), with each field's type checked by name."""
    if not isinstance(values, dict):
        raise ValidationError("a training config is a mapping of field: value")
    known = {field.name: field for field in fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValidationError(f"unknown config field {unknown[0]!r} (known: {', '.join(known)})")
    if not values.get("dataset_version"):
        raise ValidationError("dataset_version: required, like my-dataset@v1")
    clean = {}
    for name, value in values.items():
        clean[name] = _coerce(name, value, known[name].type)
    config = TrainConfig(**clean)
    _check_ranges(config)
    return config


def config_from_yaml(text: str) -> TrainConfig:
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"the config is not valid YAML: {exc}") from None
    return config_from_dict(values or {})


def _coerce(name: str, value: Any, type_name: Any) -> Any:
    kind = str(type_name)
    try:
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                    raise ValueError
                return value.lower() in ("true", "yes", "1")
            return bool(value)
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if isinstance(value, list | dict):
            # str() would turn a YAML list into "['q_proj', 'v_proj']", which fails in training.
            raise ValueError
        return "" if value is None else str(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name}: expected {kind}, got {value!r}") from None


def _check_ranges(config: TrainConfig) -> None:
    rules = [
        ("lora_rank", 1 <= config.lora_rank <= MAX_LORA_RANK,
         f"between 1 and {MAX_LORA_RANK} (the largest rank vLLM is started to serve)"),
        ("lora_alpha", config.lora_alpha > 0, "above 0"),
        ("lora_dropout", 0 <= config.lora_dropout < 1, "from 0 up to 1"),
        ("learning_rate", 0 < config.learning_rate < 1, "between 0 and 1"),
        ("epochs", config.epochs > 0 or config.max_steps > 0, "above 0 (or set max_steps)"),
        ("max_steps", config.max_steps >= 0, "0 (use epochs) or more"),
        ("time_limit_minutes", config.time_limit_minutes >= 0, "0 (no limit) or more"),
        ("batch_size", 1 <= config.batch_size <= 1024, "between 1 and 1024"),
        ("gradient_accumulation", 1 <= config.gradient_accumulation <= 1024, "1 to 1024"),
        ("max_length", 16 <= config.max_length <= 131072, "between 16 and 131072"),
        ("warmup_ratio", 0 <= config.warmup_ratio < 1, "from 0 up to 1"),
        ("scheduler", config.scheduler in SCHEDULERS, f"one of {', '.join(SCHEDULERS)}"),
        ("eval_steps", config.eval_steps >= 0, "0 (off) or more"),
        ("save_steps", config.save_steps >= 0, "0 (only at the end) or more"),
        ("early_stopping_patience", config.early_stopping_patience >= 0, "0 (off) or more"),
        ("precision", config.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
        ("quantization", config.quantization in QUANTIZATIONS,
         f"one of {', '.join(QUANTIZATIONS)}"),
        ("threads", 0 <= config.threads <= 256, "0 (all cores) or more"),
        ("target_modules", bool(config.target_modules.strip()), "'all-linear' or module names"),
        ("method", config.method in METHODS, f"one of {', '.join(METHODS)}"),
        ("runs_on", config.runs_on in RUNNERS, f"one of {', '.join(RUNNERS)}"),
        ("num_workers", 1 <= config.num_workers <= 1024, "between 1 and 1024"),
        ("cpus_per_worker", 0 < config.cpus_per_worker <= 1024, "above 0"),
        ("gpus_per_worker", 0 <= config.gpus_per_worker <= 64, "0 (CPU) or more"),
        ("beta", 0 < config.beta <= 100, "above 0"),
        ("label_smoothing", 0 <= config.label_smoothing < 0.5, "from 0 up to 0.5"),
        ("desirable_weight", config.desirable_weight > 0, "above 0"),
        ("undesirable_weight", config.undesirable_weight > 0, "above 0"),
    ]  # fmt: skip
    for field, ok, expected in rules:
        if not ok:
            raise ValidationError(f"{field}: must be {expected}, got {getattr(config, field)!r}")
    if config.runs_on == "local" and config.num_workers > 1:
        raise ValidationError(
            "num_workers: several workers need runs_on: ray (on this machine, several GPUs "
            "train one job through the worker's --gpus)"
        )
    if config.early_stopping_patience and not config.eval_steps:
        raise ValidationError("early_stopping_patience: needs eval_steps above 0")
    allowed = LOSS_TYPES.get(config.method, ())
    if config.loss_type and config.loss_type not in allowed:
        offered = f"one of {', '.join(allowed)}" if allowed else "empty (it has one loss)"
        raise ValidationError(
            f"loss_type: {config.method} takes {offered}, got {config.loss_type!r}"
        )
    if config.method == "kto" and config.loss == "kto" and config.batch_size < 2:
        # TRL's KTO estimates its KL term from mismatched answers within a batch.
        raise ValidationError("batch_size: KTO needs 2 or more (its KL term compares answers "
                              f"within a batch), got {config.batch_size}")  # fmt: skip
