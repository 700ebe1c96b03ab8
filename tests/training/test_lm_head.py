"""The label-only LM head gives what TRL's fused head gives: loss, per-token fields, gradients."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftapp.training.lm_head import use_label_only_lm_head


def lora_model(model_dir: Path, label_only: bool):
    """The tiny model with a LoRA adapter (same seed) and TRL's fused head, as the SFT trainer
    sets it up; with `label_only` ftapp's head in front of it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    torch.manual_seed(1)
    # init_lora_weights=False: B is random too, so the adapter changes the logits.
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear",
                                                  init_lora_weights=False))  # fmt: skip
    base = peft_model.get_base_model()
    add_fused_lm_head(base, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    if label_only:
        assert use_label_only_lm_head(base)
    return peft_model


@pytest.mark.parametrize("num_items_in_batch", [None, 7])
def test_the_label_only_head_matches_trls_fused_head(tiny_model_dir: Path, num_items_in_batch):
    import torch

    torch.manual_seed(2)
    input_ids = torch.randint(5, 1000, (2, 12))
    labels = input_ids.clone()
    labels[0, :5] = -100  # a prompt
    labels[1, 8:] = -100  # padding
    results = []
    for label_only in (False, True):
        model = lora_model(tiny_model_dir, label_only)
        out = model(input_ids=input_ids, labels=labels, fused_lm_head=True,
                    num_items_in_batch=num_items_in_batch)  # fmt: skip
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (trl, trl_grads), (ours, our_grads) = results
    torch.testing.assert_close(ours.loss, trl.loss, rtol=1e-4, atol=1e-5)
    for field in ("log_probs", "entropy", "mean_logits"):
        torch.testing.assert_close(getattr(ours, field), getattr(trl, field), rtol=1e-4,
                                   atol=1e-5, msg=field)  # fmt: skip
    assert torch.equal(ours.is_top1, trl.is_top1) and torch.equal(ours.label_mask, trl.label_mask)
    assert ours.log_probs[0, :4].abs().sum() == 0 and ours.log_probs[1, 7:].abs().sum() == 0
    assert our_grads.keys() == trl_grads.keys() and len(our_grads) > 4  # the LoRA weights
    for name, grad in trl_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-3, atol=1e-6, msg=name)


def test_without_fused_lm_head_the_forward_is_the_models_own(tiny_model_dir: Path):
    import torch

    model = lora_model(tiny_model_dir, label_only=True)
    input_ids = torch.randint(5, 1000, (1, 6))
    out = model(input_ids=input_ids, labels=input_ids)
    assert out.logits.shape == (1, 6, model.config.vocab_size) and out.loss > 0


def test_a_model_trl_did_not_patch_is_left_alone(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert not use_label_only_lm_head(model)
    assert "forward" not in vars(model)
