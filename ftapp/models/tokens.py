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
        # The Rust tokenizer directly: same ids, without transformers' per-row conversion.
        encoded = self.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(encoding.ids) for encoding in encoded]

    def count_text(self, texts: list[str]) -> list[int]:
        """Token counts of plain texts (generated answers), without the chat template."""
        if not texts:
            return []
        encoded = self.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(encoding.ids) for encoding in encoded]
