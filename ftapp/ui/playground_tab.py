"""The Playground tab: chat with any model variant (the base model, a final adapter, a
checkpoint) with a system prompt and sampling settings, the reply streaming in, labelled with
the model that wrote it; or compare two to four variants side by side (playground_compare.py).
Enter sends, Shift+Enter starts a new line; Stop is red only while a reply is coming.
Choosing another model starts a new conversation, so no model is shown another's answers as
its own. The engine's state is shown on a timer, so a starting or restarting vLLM server is
said plainly and the tab recovers by itself.

Production mode: once a model is promoted, "production" is in the model list; its replies
are logged (latency, length, error) for the Deploy tab's monitoring, and "Good answer" /
"Bad answer" rate the last one (plain text labels: Debian's Chromium has no emoji font)."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ftapp.deploy.production import current_production, set_feedback, stream_production_chat
from ftapp.errors import ValidationError
from ftapp.names import BASE, PRODUCTION
from ftapp.records import Role
from ftapp.services import Services
from ftapp.serving.backend import MAX_NEW_TOKENS, sampling_from_fields
from ftapp.ui.common import (
    TabWiring,
    chat_messages,
    current_user,
    fresh_choices_on_focus,
    guarded,
    message_box,
    paced,
    stop_button,
    wire_stop,
)
from ftapp.ui.playground_compare import build_compare

POLL_SECONDS = 2.0


@dataclass(frozen=True)
class SamplingFields:
    """The settings every Playground reply shares, chat and compare alike."""

    system: gr.Textbox
    temperature: gr.Slider
    top_p: gr.Slider
    max_new_tokens: gr.Number
    seed: gr.Textbox

    def inputs(self) -> list[Any]:
        return [self.system, self.temperature, self.top_p, self.max_new_tokens, self.seed]


def build_playground_tab(services: Services) -> TabWiring:
    status = gr.Markdown("Engine: …", elem_id="ft-engine-status")
    with gr.Row():
        with gr.Column(scale=1):
            fields = _build_sampling_fields()
        with gr.Column(scale=3), gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chat = _build_chat(services, fields)
            with gr.Tab("Compare side by side", id="compare"):
                compare = build_compare(services, fields.inputs(),
                                        services.servable_models)  # fmt: skip

    @guarded(services, Role.ADMIN)
    def show_status(request: gr.Request) -> str:
        engine = services.backend.status()
        return f"**Engine ({engine.backend}): {engine.state}** · {html.escape(engine.detail)}"

    timer = gr.Timer(POLL_SECONDS, active=False)  # started for admins when the page loads
    timer.tick(show_status, None, [status], api_name=False, show_progress="hidden")
    return chat + compare + TabWiring(on_load=((show_status, None, [status]),), timers=(timer,))


def model_names(services: Services) -> list[str]:
    """What the Playground can chat with: the base model, "production" once something is
    promoted, every adapter and checkpoint."""
    names = services.servable_models()
    with services.db() as db:
        in_production = current_production(db) is not None
    if in_production:
        names = [names[0], PRODUCTION, *names[1:]]
    return names


def _build_sampling_fields() -> SamplingFields:
    system = gr.Textbox(label="System prompt", lines=3, elem_id="ft-play-system",
                        placeholder="Optional: instructions for every answer")  # fmt: skip
    with gr.Accordion("Sampling", open=True):
        temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature (0: greedy)")
        top_p = gr.Slider(0.05, 1, value=0.95, step=0.05, label="Top-p")
        max_new_tokens = gr.Number(value=256, precision=0, minimum=1, maximum=MAX_NEW_TOKENS,
                                   label="Max new tokens")  # fmt: skip
        # A textbox, so "empty" can mean random (a Number field shows and sends 0).
        seed = gr.Textbox(value="", label="Seed (empty: random)", elem_id="ft-play-seed")
    return SamplingFields(system, temperature, top_p, max_new_tokens, seed)


def _build_chat(services: Services, fields: SamplingFields) -> TabWiring:
    with gr.Row():
        model = gr.Dropdown(label="Model", choices=[BASE], value=BASE, scale=3,
                            allow_custom_value=True, elem_id="ft-play-model")  # fmt: skip
        refresh = gr.Button("Refresh models", size="sm", scale=1)
    # No share button: it posts to a Hugging Face discussion, not what a private model wants.
    chatbot = gr.Chatbot(label="Conversation", height=460, elem_id="ft-play-chat",
                         render_markdown=False, buttons=["copy", "copy_all"])  # fmt: skip
    message = message_box("ft-play-message")
    with gr.Row():
        send = gr.Button("Send", variant="primary", elem_id="ft-play-send")
        stop = gr.Button("Stop", variant="secondary", interactive=False, elem_id="ft-play-stop")
        clear = gr.Button("Clear", elem_id="ft-play-clear")
    with gr.Row(visible=False) as rating_row:  # shown while the model is production
        good = gr.Button("Good answer", size="sm", elem_id="ft-play-good")
        bad = gr.Button("Bad answer", size="sm", elem_id="ft-play-bad")
        rated = gr.Markdown("", elem_id="ft-play-rated")
    # The conversation as the model sees it (each reply names its model, which the backend
    # never sees); the Chatbot shows an escaped, labelled copy.
    conversation = gr.State([])
    # The production_requests id of the last production reply, kept on the server for the
    # rating buttons; None after a reply of any other model.
    production_request = gr.State(None)

    @guarded(services, Role.ADMIN)
    def list_models(request: gr.Request, current: str) -> dict:
        names = model_names(services)
        return gr.update(choices=names, value=current if current in names else BASE)

    @guarded(services, Role.ADMIN)
    def chat(request: gr.Request, model_name: str, system_prompt: str, temp: float,
             p: float, max_tokens: Any, seed_value: Any, text: str, history: list):  # fmt: skip
        model_name = model_name or BASE
        sampling = sampling_from_fields(temperature=temp, top_p=p, max_new_tokens=max_tokens,
                                        seed=seed_value)  # fmt: skip
        history = [*history, {"role": "user", "content": text or ""}]
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        request_id = None
        if model_name == PRODUCTION:  # logged, and rated with the buttons below the chat
            user = current_user(services, request).name
            reply = stream_production_chat(services.db, services.backend, services.served_base,
                                           messages + history, sampling, user)  # fmt: skip
            pieces, request_id = reply.pieces, reply.request_id
        else:
            pieces = services.stream_chat(model_name, messages + history, sampling)
        yield chat_messages(history), "", history, request_id, stop_button(True)
        # The state follows the stream, so a reply cut short by Stop stays in the
        # conversation as far as it got.
        for so_far in paced(conversation_so_far(history, pieces, model_name)):
            yield chat_messages(so_far), "", so_far, request_id, stop_button(True)

    @guarded(services, Role.ADMIN)
    def stopped(request: gr.Request) -> dict:
        return stop_button(False)

    fresh_choices_on_focus(services, model, lambda: model_names(services), "playground_models")
    inputs = [model, *fields.inputs(), message, conversation]
    outputs = [chatbot, message, conversation, production_request, stop]
    send_event = send.click(chat, inputs, outputs, api_name="chat")
    submit_event = message.submit(chat, inputs, outputs, api_name=False)
    wire_stop(stop, stopped, [send_event, submit_event])

    @guarded(services, Role.ADMIN)
    def clear_chat(request: gr.Request) -> tuple[list, list, str, None, str]:
        return [], [], "", None, ""

    clear.click(clear_chat, None, [chatbot, conversation, message, production_request, rated],
                api_name=False)  # fmt: skip

    @guarded(services, Role.ADMIN)
    def switch_model(request: gr.Request, model_name: str, history: list):
        """Another model: a new conversation (its rating buttons only for production)."""
        if history:
            gr.Info(f"A new conversation with {model_name or BASE}.")
        return [], [], None, "", gr.update(visible=model_name == PRODUCTION)

    @guarded(services, Role.ADMIN)
    def clear_rating(request: gr.Request) -> str:
        return ""  # a new reply is not rated yet

    def rater(value: int, label: str):
        @guarded(services, Role.ADMIN)
        def rate(request: gr.Request, request_id: int | None) -> str:
            if request_id is None:
                raise ValidationError(
                    f"no production reply to rate: choose the model {PRODUCTION!r} and send a "
                    "message first"
                )
            with services.db() as db:
                set_feedback(db, int(request_id), current_user(services, request).name, value)
            return f"Rated the last reply: **{label}**"

        rate.__name__ = f"rate_{label.split()[0].lower()}"
        return rate

    model.change(switch_model, [model, conversation],
                 [chatbot, conversation, production_request, rated, rating_row],
                 api_name=False)  # fmt: skip
    send.click(clear_rating, None, [rated], api_name=False)
    message.submit(clear_rating, None, [rated], api_name=False)
    good.click(rater(1, "Good answer"), [production_request], [rated], api_name="rate_good")
    bad.click(rater(-1, "Bad answer"), [production_request], [rated], api_name="rate_bad")
    refresh.click(list_models, [model], [model], api_name="list_models")
    return TabWiring(on_load=((list_models, [model], [model]),))


def conversation_so_far(
    history: list[dict], pieces: Iterator[str], model: str
) -> Iterator[list[dict]]:
    """The conversation with the reply (labelled with its model) as far as it has come, after
    each piece of it."""
    reply = ""
    try:
        for piece in pieces:
            reply += piece
            yield [*history, {"role": "assistant", "content": reply, "model": model}]
    finally:
        # Closed early (Stop, a closed page): close the stream now, not whenever it is
        # garbage-collected, so the engine stops and a production reply is logged at once.
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
