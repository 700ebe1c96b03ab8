"""The in-process fallback: transformers + peft in the web process, for machines where vLLM
can't be installed (a free CPU Space, macOS).

One copy of the base model holds every adapter asked for so far (PEFT's multi-adapter
model); a request switches to its adapter, or turns adapters off for the base model. One
generation runs at a time (the active adapter is state of the shared model), so answers to
concurrent requests queue: that is the throughput vLLM's batching is measured against.
Scoring an answer (its log-probability) is one forward pass under the same lock.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ftapp.errors import ServingError
from ftapp.names import BASE
from ftapp.serving.backend import (
    AnswerScore,
    BackendEndpoint,
    BackendState,
    BackendStatus,
    ChatRequest,
    ServedModel,
    answer_start,
)


class HFBackend:
    name = "hf"

    def __init__(self, base_model_path: Path, threads: int = 0, reason: str = "") -> None:
        self.base_model_path = Path(base_model_path)
        self.threads = threads  # 0: torch's default (all cores)
        self.reason = reason  # why this backend and not vLLM, shown with the status
        self._lock = threading.Lock()  # one generation at a time; guards the model too
        self._model: Any = None
        self._tokenizer: Any = None
        self._adapters: dict[Path, str] = {}  # adapter folder -> PEFT adapter name
        self.on_ready: Callable[[], object] | None = None  # never called: nothing to forget

    def start(self) -> None:
        pass  # the model loads on the first request

    def status(self) -> BackendStatus:
        detail = f"transformers in-process, {self.base_model_path.name}"
        if self._model is None:
            detail += " (loads on the first request)"
        if self.reason:
            detail += f"; {self.reason}"
        return BackendStatus(self.name, BackendState.READY, detail)

    def stream_chat(self, request: ChatRequest) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stop = threading.Event()

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop.is_set()

        with self._lock:
            tokenizer = self._load()
            adapter = self._use_adapter(request.model.adapter_path)
            model = self._model  # a PeftModel once the first adapter is loaded
            inputs = tokenizer.apply_chat_template(
                request.messages, add_generation_prompt=True, return_tensors="pt",
                return_dict=True,
            )  # fmt: skip
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            sampling = request.sampling
            kwargs: dict[str, Any] = dict(
                **inputs,
                max_new_tokens=sampling.max_new_tokens,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([StopWhenAsked()]),
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
            if sampling.temperature > 0:
                kwargs.update(do_sample=True, temperature=sampling.temperature,
                              top_p=sampling.top_p)  # fmt: skip
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            errors: list[BaseException] = []

            def generate() -> None:
                try:
                    if sampling.seed is not None:
                        torch.manual_seed(sampling.seed)
                    # The base model: the same weights with every adapter switched off.
                    off = model.disable_adapter() if adapter is None and self._adapters else None
                    with torch.inference_mode(), off or nullcontext():
                        model.generate(**kwargs)
                except BaseException as exc:  # reported to the reader below
                    errors.append(exc)
                    streamer.end()

            thread = threading.Thread(target=generate, name="hf-generate", daemon=True)
            thread.start()
            try:
                yield from (text for text in streamer if text)
            finally:
                stop.set()  # the reader went away (Stop button) or finished
                thread.join()
            if errors:
                raise ServingError(f"generation failed: {errors[0]}") from errors[0]

    def answer_likelihood(
        self, model: ServedModel, prompt: list[dict[str, str]], answer: list[dict[str, str]]
    ) -> AnswerScore:
        """One forward pass over the templated prompt and answer, with the model's adapter
        active (every adapter off for the base model); the answer tokens' log-probabilities
        summed in float32."""
        import torch

        with self._lock:
            tokenizer = self._load()
            adapter = self._use_adapter(model.adapter_path)
            prompt_ids = _template_ids(tokenizer, prompt, add_generation_prompt=True)
            full_ids = _template_ids(tokenizer, prompt + answer, add_generation_prompt=False)
            start = answer_start(prompt_ids, full_ids)
            off = self._model.disable_adapter() if adapter is None and self._adapters else None
            try:
                with torch.inference_mode(), off or nullcontext():
                    logits = self._model(input_ids=torch.tensor([full_ids])).logits[0]
            except RuntimeError as exc:  # out of memory, a sequence too long for the model
                raise ServingError(f"scoring the answer failed: {exc}") from None
            # The logits at position i predict token i + 1.
            logprobs = torch.log_softmax(logits[start - 1 : -1].float(), dim=-1)
            targets = torch.tensor(full_ids[start:]).unsqueeze(1)
            return AnswerScore(float(logprobs.gather(1, targets).sum()), len(full_ids) - start)

    def register_alias(self, alias: str, adapter_path: Path | None) -> None:
        pass  # a request names its adapter folder: aliases are resolved at every request

    def endpoint(self) -> BackendEndpoint:
        return BackendEndpoint(url=None, base_name=BASE, own_server=False)

    def close(self) -> None:
        with self._lock:
            self._model = self._tokenizer = None
            self._adapters.clear()

    # --- inside the lock ---------------------------------------------------------------------

    def _load(self) -> Any:
        """Load the base model and tokenizer the first time; returns the tokenizer."""
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.base_model_path))
                self._model = AutoModelForCausalLM.from_pretrained(
                    str(self.base_model_path), dtype=torch.float32
                ).eval()
            except (OSError, ValueError) as exc:
                raise ServingError(f"can't load {self.base_model_path}: {exc}") from None
        return self._tokenizer

    def _use_adapter(self, path: Path | None) -> str | None:
        """Make the adapter at `path` the active one (loading it the first time); None: base."""
        if path is None:
            return None
        path = Path(path).resolve()
        if not (path / "adapter_config.json").is_file():
            raise ServingError(f"no adapter at {path} (adapter_config.json is missing)")
        name = self._adapters.get(path)
        if name is None:
            from peft import PeftModel

            # PEFT adapter names are module keys: no dots, so derive one from the path.
            name = "a" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            try:
                if not self._adapters:
                    self._model = PeftModel.from_pretrained(
                        self._model, str(path), adapter_name=name
                    ).eval()
                else:
                    self._model.load_adapter(str(path), adapter_name=name)
            except (OSError, ValueError, RuntimeError) as exc:
                raise ServingError(f"can't load the adapter at {path}: {exc}") from None
            self._adapters[path] = name
        self._model.set_adapter(name)
        return name


def _template_ids(
    tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool
) -> list[int]:
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=True
    )["input_ids"]
    return [int(i) for i in ids]
