"""The LM head's loss on CPU: log-probabilities of the label tokens only, in plain torch.

TRL 1.16 scores tokens through a "fused LM head" (`trl.trainer.utils.add_fused_lm_head`):
without a Triton device it projects *every* position, prompt and padding included, and folds
each vocabulary-sized tile of logits in a dozen elementwise passes, forward and backward. On
this project's 2-core CPU that was 0.93 s of every 512-token step of the bundled model; the
label positions alone through one matrix product and PyTorch's own log-softmax take 0.26 s
(benchmarks/bench_lm_head.py). `use_label_only_lm_head` puts that path in front of TRL's for
CPU training; everything else (no `fused_lm_head`, shifted labels, softcapped or scaled
logits, MoE router losses) still goes to TRL's forward.
"""

from __future__ import annotations

import functools
import types
from typing import Any


def use_label_only_lm_head(model: Any) -> bool:
    """Put the label-only LM head in front of the fused head TRL added to `model` (the base
    model under PEFT). Returns False, changing nothing, for a model it doesn't handle or
    whose forward TRL did not patch (ORPO's trainer has no fused head)."""
    if "forward" not in vars(model):
        return False
    config = model.config.get_text_config()
    scaled = any(
        getattr(config, name, None) is not None
        for name in ("final_logit_softcapping", "logit_scale", "output_multiplier",
                     "lm_head_multiplier", "logits_scaling")
    )  # fmt: skip
    if scaled or getattr(config, "output_router_logits", False):
        return False
    trl_forward = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None,
                num_items_in_batch=None, **kwargs):  # fmt: skip
        if not fused_lm_head or shift_labels is not None or kwargs.get("output_router_logits"):
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels,
                               shift_labels=shift_labels, num_items_in_batch=num_items_in_batch,
                               **kwargs)  # fmt: skip
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        return label_log_probs(hidden, labels[:, 1:], self.get_output_embeddings(),
                               num_items_in_batch)  # fmt: skip

    model.forward = types.MethodType(forward, model)
    return True


def label_log_probs(hidden: Any, labels: Any, lm_head: Any, num_items_in_batch: Any) -> Any:
    """TRL's FusedCausalLMOutput for next-token `labels` (-100: not scored) from the
    backbone's `hidden` states: the head runs on the scored positions only."""
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    mask = labels != -100
    targets = labels[mask]
    logits = lm_head(hidden[mask]).float()  # (scored tokens, vocabulary)
    log_z = logits.logsumexp(-1)
    scored = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
    # The fields TRL's SFT, DPO and KTO trainers log as metrics, detached there too. DPO's WPO
    # weights (log_sum_sq_probs) are left out: ftapp doesn't set use_weighting, and a None
    # there fails loudly rather than weighting wrongly.
    with torch.no_grad():
        p = (logits - log_z.unsqueeze(-1)).exp()
        metrics = {
            "entropy": log_z - (p * logits).sum(-1),
            "mean_logits": logits.mean(-1),
            "is_top1": logits.argmax(-1) == targets,
        }

    def spread(values: Any) -> Any:
        # masked_scatter keeps a batch with no scored token connected to the graph (a zero).
        return values.new_zeros(mask.shape).masked_scatter(mask, values)

    log_probs = spread(scored)
    count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    return FusedCausalLMOutput(
        loss=-log_probs.sum() / count,
        log_probs=log_probs,
        label_mask=mask,
        **{name: spread(value) for name, value in metrics.items()},
    )
