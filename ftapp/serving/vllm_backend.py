"""Generation through a vLLM OpenAI-compatible server: the one ftapp supervises, or any
deployment given by FTAPP_VLLM_URL.

Adapters are registered at run time with POST /v1/load_lora_adapter under their model
variant's name, the first time a request names them (and again after the server restarted
and forgot them), so every finished job and checkpoint is servable without a restart. The
base model is the server's root model (the one without a parent in /v1/models).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from ftapp.errors import ServingError
from ftapp.serving.backend import BASE, BackendState, BackendStatus, ChatRequest, ServedModel
from ftapp.serving.vllm_server import VllmServer

REQUEST_TIMEOUT = httpx.Timeout(10.0, read=300.0)  # a long answer on a busy CPU is slow


class VllmBackend:
    name = "vllm"

    def __init__(self, url: str | None = None, server: VllmServer | None = None) -> None:
        if (url is None) == (server is None):
            raise ValueError("give either the URL of a vLLM deployment or a supervised server")
        self._url = url.rstrip("/") if url else None
        self.server = server

    @property
    def url(self) -> str:
        return self._url or self.server.url  # type: ignore[union-attr]

    def start(self) -> None:
        if self.server is not None:
            self.server.start()

    def status(self) -> BackendStatus:
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

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    # --- adapters ------------------------------------------------------------------------

    def load_adapter(self, model: ServedModel) -> None:
        """Register an adapter with the server under its variant's name (no-op if present)."""
        assert model.adapter_path is not None
        if model.name in self._models():
            return
        payload = {"lora_name": model.name, "lora_path": str(model.adapter_path)}
        response = self._post("/v1/load_lora_adapter", payload)
        if response.status_code != 200 and "already been loaded" not in response.text:
            raise ServingError(
                f"vLLM refused the adapter {model.name!r} ({response.status_code}): "
                f"{_error_text(response)}"
            )

    def _model_name(self, model: ServedModel) -> str:
        if model.adapter_path is None:
            return self._base_name()
        self.load_adapter(model)
        return model.name

    def _base_name(self) -> str:
        roots = [name for name, parent in self._models().items() if parent is None]
        return BASE if BASE in roots or not roots else roots[0]

    def _models(self) -> dict[str, str | None]:
        """Served model names -> parent (None for a base model, the base for an adapter)."""
        try:
            response = httpx.get(f"{self.url}/v1/models", timeout=5.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ServingError(f"vLLM at {self.url} is not answering: {exc}") from None
        return {m["id"]: m.get("parent") for m in response.json().get("data", [])}

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
                        f"vLLM refused the request ({response.status_code}): "
                        f"{_error_text(response)}"
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


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    error = data.get("error", data) if isinstance(data, dict) else data
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or error)[:300]
