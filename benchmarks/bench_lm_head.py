"""The LM head's loss alone: TRL's fused head (its torch path, as on a CPU) against ftapp's
label-only head, on the bundled model's shape, forward and backward.

    .venv/bin/python benchmarks/bench_lm_head.py [--tokens 512] [--labelled 0.6] [--repeat 4]

Random hidden states (`--tokens` x 576) and the tied 576 x 49,152 head, under bf16 autocast as
the CPU presets train; `--labelled` of the positions carry a label (the rest are prompt). Runs:
TRL's `ChunkedLogProbFunction` over every position with the fields the SFT trainer asks for
(what `add_fused_lm_head` does without Triton); the same over the labelled positions only; the
same with log-probabilities only; `ftapp.training.lm_head.label_log_probs` (one matrix product
on the labelled positions, PyTorch's log-softmax, the metrics without gradients). Fastest of
--repeat, milliseconds, and the ratio to the first. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import time

import torch
from trl.kernels.chunked_logprob import ChunkedLogProbFunction

from ftapp.training.lm_head import label_log_probs

HIDDEN, VOCAB = 576, 49_152  # SmolLM2-135M
TRL_SFT_FIELDS = ("log_probs", "entropy", "is_top1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--labelled", type=float, default=0.6)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    head = torch.nn.Linear(HIDDEN, VOCAB, bias=False)
    head.weight.requires_grad_(False)  # the base model is frozen under LoRA
    hidden = torch.randn(args.tokens, HIDDEN, requires_grad=True)
    labels = torch.randint(0, VOCAB, (args.tokens,))
    labels[torch.rand(args.tokens) >= args.labelled] = -100
    mask = labels != -100

    def trl(rows: torch.Tensor, targets: torch.Tensor, fields: tuple[str, ...]) -> torch.Tensor:
        out = ChunkedLogProbFunction.apply(rows, head.weight, None, targets, 1.0, 32768, None,
                                           1.0, fields)  # fmt: skip
        return -out[0].sum()

    runs = {
        "TRL fused head, every position (its CPU path)":
            lambda: trl(hidden, labels.clamp(min=0), TRL_SFT_FIELDS),
        "TRL fused head, labelled positions only": lambda: trl(hidden[mask], labels[mask],
                                                                TRL_SFT_FIELDS),
        "TRL fused head, labelled only, log-probabilities only":
            lambda: trl(hidden[mask], labels[mask], ("log_probs",)),
        "ftapp label-only head": lambda: label_log_probs(hidden[None], labels[None], head,
                                                         None).loss,
    }  # fmt: skip
    print(
        f"{args.tokens} tokens, {int(mask.sum())} labelled, head {HIDDEN} x {VOCAB}, bf16 "
        f"autocast, {args.threads} threads; forward + backward, fastest of {args.repeat}"
    )
    first = None
    for name, loss_of in runs.items():
        times = []
        for _ in range(args.repeat):
            hidden.grad = None
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_of()
            loss.backward()
            times.append(time.perf_counter() - started)
        best = min(times) * 1000
        first = first or best
        print(f"  {name:<56} {best:8.0f} ms  {first / best:5.2f}x")


if __name__ == "__main__":
    main()
