"""Counting tokens the way training will see them: the chat template, then the tokenizer."""

from __future__ import annotations

from pathlib import Path


class ChatTokenCounter:
    """Callable: a batch of conversations -> their token counts under the model's chat template."""

    def __init__(self, model_dir: Path):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))

    def __call__(self, conversations: list[list[dict[str, str]]]) -> list[int]:
        if not conversations:
            return []
        texts = self.tokenizer.apply_chat_template(conversations, tokenize=False)
        return self._count(texts)

    def count_text(self, texts: list[str]) -> list[int]:
        """Token counts of plain texts (generated answers), without the chat template."""
        if not texts:
            return []
        return self._count(texts)

    def _count(self, texts: list[str]) -> list[int]:
        # The Rust tokenizer directly, on all cores: the same ids without transformers' per-row
        # conversion, and without the character offsets a count doesn't need (15 % faster).
        backend = self.tokenizer.backend_tokenizer
        encoded = backend.encode_batch_fast(texts, add_special_tokens=False)
        return [len(encoding) for encoding in encoded]  # len: no list of ids to build
