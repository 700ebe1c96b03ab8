"""Sharing one GPU between serving and training: how much memory a job will need, how much
the GPU has free now, and, when it won't fit, the sentence that says so.

vLLM takes its share of the GPU up front (FTAPP_VLLM_GPU_MEMORY, 0.5 by default) and keeps
it; a training job that doesn't fit in the rest waits in the queue with that sentence on it
(shown in the Train tab) instead of dying out of memory. Free memory is read with nvidia-smi,
so neither the worker nor the web app imports torch to ask. The estimate is deliberately
rough (weights + LoRA optimizer state + activations + CUDA context) and errs high.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ftapp.training.config import TrainConfig

GIB = 2**30
CUDA_CONTEXT_GIB = 1.0  # the CUDA context, kernels and allocator slack of one process
# Bytes of saved activations per token per layer per hidden unit in 16-bit training without
# recomputation (about 34 for a transformer layer: Korthikanti et al. 2022); with gradient
# checkpointing only each layer's input (2 bytes) is kept, plus one layer's worth at a time.
ACTIVATION_BYTES = 34


def has_nvidia_gpu() -> bool:
    """Whether an NVIDIA GPU is present, seen from its driver's files (no torch import)."""
    return Path("/proc/driver/nvidia/gpus").exists()


@dataclass(frozen=True)
class GpuMemory:
    free_gib: float
    total_gib: float


def gpu_memory(index: int = 0) -> GpuMemory | None:
    """Free and total memory of GPU `index` now, or None where there is no NVIDIA GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={index}", "--query-gpu=memory.free,memory.total",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
        free_mib, total_mib = (float(x) for x in out.strip().splitlines()[0].split(","))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return GpuMemory(free_mib / 1024, total_mib / 1024)


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    hidden: int
    layers: int
    vocab: int


def model_shape(model_path: Path) -> ModelShape:
    """The model's size from the folder's files, without loading it."""
    config = json.loads((Path(model_path) / "config.json").read_text())
    config = config.get("text_config", config)
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    bytes_per_param = 4 if "32" in dtype else 2
    weights = sum(f.stat().st_size for f in Path(model_path).glob("*.safetensors"))
    weights = weights or sum(f.stat().st_size for f in Path(model_path).glob("*.bin"))
    vocab = int(config.get("vocab_size", 32000))
    return ModelShape(weights // bytes_per_param, config["hidden_size"],
                      config["num_hidden_layers"], vocab)  # fmt: skip


def estimate_training_gib(config: TrainConfig, model_path: Path, bf16: bool = True) -> float:
    """GiB a LoRA job on one GPU is expected to use at its peak (an estimate that errs high)."""
    shape = model_shape(model_path)
    params, hidden, layers = shape.parameters, shape.hidden, shape.layers
    weight_bytes = 0.5 if config.quantization == "4bit" else (2 if bf16 else 4)
    weights = params * weight_bytes
    # LoRA matrices on every linear layer: about 2 x rank x hidden per projection, seven
    # projections a layer; fp32 weights + gradients + two Adam moments = 16 bytes each.
    lora = layers * 7 * 2 * config.lora_rank * hidden * 16
    tokens = config.batch_size * config.max_length
    if config.gradient_checkpointing:
        activations = tokens * hidden * (2 * layers + ACTIVATION_BYTES)
    else:
        activations = tokens * hidden * ACTIVATION_BYTES * layers
    logits = tokens * shape.vocab * 4 * 2  # fp32 logits and their gradient
    return (weights + lora + activations + logits) / GIB + CUDA_CONTEXT_GIB


def wait_reason(need_gib: float, memory: GpuMemory | None, vllm_share: float) -> str | None:
    """Why the job can't start on this GPU now, or None when it fits (or there is no GPU)."""
    if memory is None or need_gib <= memory.free_gib:
        return None
    vllm_gib = vllm_share * memory.total_gib
    return (
        f"waiting for GPU memory: this job needs about {need_gib:.1f} GiB and "
        f"{memory.free_gib:.1f} of {memory.total_gib:.1f} GiB are free (vLLM keeps "
        f"{vllm_share:.0%}, about {vllm_gib:.1f} GiB, for serving). It starts by itself when "
        "memory frees up; to make room, lower the batch size or max length, turn on gradient "
        "checkpointing or 4-bit, or restart the app with a smaller FTAPP_VLLM_GPU_MEMORY"
    )


def gpu_wait_reason(
    config: TrainConfig, model_path: Path, vllm_share: float, index: int = 0
) -> str | None:
    """Why this job can't start on GPU `index` now; None when it fits or there is no GPU."""
    memory = gpu_memory(index)
    if memory is None:
        return None
    return wait_reason(estimate_training_gib(config, model_path), memory, vllm_share)
