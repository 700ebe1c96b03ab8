"""Generation through a vLLM OpenAI-compatible server: the one ftapp supervises, or any
deployment given by FTAPP_VLLM_URL.

Adapters are registered at run time with POST /v1/load_lora_adapter under their model
variant's name, the first time a request names them (and again after the server restarted
and forgot them), so every finished job and checkpoint is servable without a restart. The
base model is the server's root model (the one without a parent in /v1/models).

One name can change folders: "production" names whichever adapter was promoted last. vLLM
lists each adapter with its folder as "root" in /v1/models, so a name registered with another
folder is unloaded (POST /v1/unload_lora_adapter) and loaded again from the new one. The app
also registers "production" as soon as a promotion is made and whenever the server becomes
ready (start-up, a restart): `on_ready` is called then, so clients calling the server directly
never depend on the app having asked first.

An answer is scored (its log-probability, for an evaluation's preference accuracy) through
/tokenize and /v1/completions' `prompt_logprobs`, vLLM's own extensions of the API.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from ftapp.errors import FtappError, ServingError
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
from ftapp.serving.vllm_server import VllmServer

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = httpx.Timeout(10.0, read=300.0)  # a long answer on a busy CPU is slow


class VllmBackend:
    name = "vllm"

    def __init__(self, url: str | None = None, server: VllmServer | None = None) -> None:
        if (url is None) == (server is None):
            raise ValueError("give either the URL of a vLLM deployment or a supervised server")
        self._url = url.rstrip("/") if url else None
        self.server = server
        # Called (in the polling thread) each time status() finds the server ready after it
        # was not: the app registers "production" again there. Errors are logged, not raised.
        self.on_ready: Callable[[], object] | None = None
        self._was_ready = False

    @property
    def url(self) -> str:
        return self._url or self.server.url  # type: ignore[union-attr]

    def start(self) -> None:
        if self.server is not None:
            self.server.start()

    def status(self) -> BackendStatus:
        status = self._status()
        became_ready = status.is_ready and not self._was_ready
        self._was_ready = status.is_ready
        if became_ready and self.on_ready is not None:
            try:
                self.on_ready()
            except FtappError as exc:  # the engine still answers; production waits for a fix
                log.warning("vLLM is ready, but registering production failed: %s", exc)
            except Exception:  # a bug or a locked database must not take the status down
                log.exception("vLLM is ready, but registering production failed")
        return status

    def _status(self) -> BackendStatus:
        if self.server is not None:
            return self.server.status()
        try:
            models = self._models()
        except ServingError as exc:
            return BackendStatus(self.name, BackendState.DOWN, str(exc))
        return BackendStatus(self.name, BackendState.READY,
                             f"vLLM at {self.url}, {len(models)} model(s) served")  # fmt: skip

    def stream_chat(self, request: ChatRequest) -> Iterator[str]:
        status = self.status()
        if not status.is_ready:
            raise ServingError(f"vLLM is not ready: {status.detail}")
        name = self._model_name(request.model)
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": name,
            "messages": request.messages,
            "stream": True,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        yield from self._stream(body)

    def answer_likelihood(
        self, model: ServedModel, prompt: list[dict[str, str]], answer: list[dict[str, str]]
    ) -> AnswerScore:
        """The server's own chat template tokenizes the prompt (with its generation prompt) and
        the whole conversation (POST /tokenize); /v1/completions then reads the conversation's
        token ids without generating (max_tokens 1) and returns each prompt token's
        log-probability (`prompt_logprobs: 0`: the token's own, no alternatives); the answer's
        are summed. vLLM's prompt log-probabilities leave out a LoRA delta on lm_head
        (vllm#51594); ftapp's adapters do not train lm_head."""
        status = self.status()
        if not status.is_ready:
            raise ServingError(f"vLLM is not ready: {status.detail}")
        name = self._model_name(model)
        prompt_ids = self._tokenize(name, prompt, add_generation_prompt=True)
        full_ids = self._tokenize(name, prompt + answer, add_generation_prompt=False)
        start = answer_start(prompt_ids, full_ids)
        body = {"model": name, "prompt": full_ids, "max_tokens": 1, "temperature": 0.0,
                "prompt_logprobs": 0, "add_special_tokens": False}  # fmt: skip
        data = self._json(self._post("/v1/completions", body), "scoring the answer")
        try:
            logprobs = data["choices"][0]["prompt_logprobs"]
            total = sum(logprobs[i][str(full_ids[i])]["logprob"]
                        for i in range(start, len(full_ids)))  # fmt: skip
            return AnswerScore(float(total), len(full_ids) - start)
        except (KeyError, IndexError, TypeError) as exc:
            raise ServingError(f"vLLM gave no prompt log-probabilities ({exc!r})") from None

    def _tokenize(
        self, name: str, messages: list[dict[str, str]], *, add_generation_prompt: bool
    ) -> list[int]:
        body = {"model": name, "messages": messages,
                "add_generation_prompt": add_generation_prompt}  # fmt: skip
        data = self._json(self._post("/tokenize", body), "tokenizing the conversation")
        return [int(token) for token in data["tokens"]]

    def _json(self, response: httpx.Response, doing: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise ServingError(
                f"vLLM refused {doing} ({response.status_code}): {error_text(response)}"
            )
        return response.json()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    # --- adapters ------------------------------------------------------------------------

    def load_adapter(self, model: ServedModel) -> None:
        """Register an adapter with the server under `model.name`: nothing to do if that name
        already serves this folder; a name serving another folder is unloaded first."""
        assert model.adapter_path is not None
        path = str(model.adapter_path)
        loaded = self._models().get(model.name)
        if loaded is not None:
            if loaded.get("root") == path:
                return
            self.unload_adapter(model.name)
        response = self._post("/v1/load_lora_adapter", {"lora_name": model.name, "lora_path": path})
        # "already been loaded": a request beside this one registered it at the same moment.
        if response.status_code != 200 and "already been loaded" not in response.text:
            raise ServingError(
                f"vLLM refused the adapter {model.name!r} ({response.status_code}): "
                f"{error_text(response)}"
            )

    def unload_adapter(self, name: str) -> None:
        """Forget the adapter registered as `name` (nothing to do if there is none)."""
        response = self._post("/v1/unload_lora_adapter", {"lora_name": name})
        if response.status_code != 200 and "cannot be found" not in response.text:
            raise ServingError(
                f"vLLM refused to unload the adapter {name!r} ({response.status_code}): "
                f"{error_text(response)}"
            )

    def register_alias(self, name: str, adapter_path: Path | None) -> None:
        """Make `name` serve the adapter at `adapter_path`, or no adapter at all (None)."""
        if adapter_path is not None:
            self.load_adapter(ServedModel(name, adapter_path))
            return
        card = self._models().get(name)
        if card is not None and card.get("parent") is not None:  # never the base model itself
            self.unload_adapter(name)

    def base_name(self) -> str:
        """The name the server gives the base model ("base" on the server ftapp starts)."""
        roots = [name for name, card in self._models().items() if card.get("parent") is None]
        return BASE if BASE in roots or not roots else roots[0]

    def endpoint(self) -> BackendEndpoint:
        try:
            base_name = self.base_name()
        except ServingError:  # starting or down: the name ftapp's own server gives it
            base_name = BASE
        own_server = self.server is not None
        return BackendEndpoint(url=self.url, base_name=base_name, own_server=own_server)

    def _model_name(self, model: ServedModel) -> str:
        if model.adapter_path is None:
            return self.base_name()
        self.load_adapter(model)
        return model.name

    def _models(self) -> dict[str, dict[str, Any]]:
        """Served model names -> their /v1/models card: "parent" is None for a base model and
        the base for an adapter; "root" is an adapter's folder as it was registered."""
        try:
            response = httpx.get(f"{self.url}/v1/models", timeout=5.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ServingError(f"vLLM at {self.url} is not answering: {exc}") from None
        return {m["id"]: m for m in response.json().get("data", [])}

    def _post(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        try:
            return httpx.post(f"{self.url}{path}", json=payload, timeout=REQUEST_TIMEOUT)
        except httpx.HTTPError as exc:
            raise ServingError(f"vLLM at {self.url} is not answering: {exc}") from None

    # --- streaming ---------------------------------------------------------------------------

    def _stream(self, body: dict[str, Any]) -> Iterator[str]:
        """Server-sent events of /v1/chat/completions, as text pieces. Leaving the loop early
        closes the connection, and vLLM aborts the request."""
        url = f"{self.url}/v1/chat/completions"
        try:
            with httpx.stream("POST", url, json=body, timeout=REQUEST_TIMEOUT) as response:
                if response.status_code != 200:
                    response.read()
                    raise ServingError(
                        f"vLLM refused the request ({response.status_code}): {error_text(response)}"
                    )
                for line in response.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[len("data: ") :])
                    if "error" in event:
                        raise ServingError(f"vLLM: {event['error'].get('message', event)}")
                    for choice in event.get("choices", []):
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text
        except httpx.HTTPError as exc:
            raise ServingError(f"vLLM at {self.url} stopped answering: {exc}") from None


def error_text(response: httpx.Response) -> str:
    """The message of an OpenAI-style error body (vLLM, a judge endpoint), else the start of
    the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or "(empty body)"
    error = data.get("error", data) if isinstance(data, dict) else data
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or error)[:300]
