"""The Playground's side-by-side compare: pick two to four model variants, write one message,
and their answers stream side by side, each pane labelled with its model, with the same system
prompt, sampling and seed (ftapp.generation.together.compare_replies). Follow-ups go to each,
every model keeping its own conversation; Stop stops them all. Not blind: this is the admin's
own look right after training; the Arena is the place for blind judging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from ftapp.generation.together import MAX_COMPARED, compare_models, compare_replies
from ftapp.records import Role
from ftapp.services import Services
from ftapp.serving.backend import sampling_from_fields
from ftapp.ui.common import (
    TabWiring,
    chat_messages,
    fresh_choices_on_focus,
    guarded,
    message_box,
    paced,
    require,
    stop_button,
    wire_stop,
)


def build_compare(
    services: Services, sampling_inputs: list[Any], names: Callable[[], list[str]]
) -> TabWiring:
    """The compare section; `sampling_inputs` are the Playground's system prompt and sampling
    fields (shared with its chat), `names` the models it offers."""
    models = gr.Dropdown(label=f"Models to compare (2 to {MAX_COMPARED})", choices=[],
                         multiselect=True, max_choices=MAX_COMPARED, allow_custom_value=True,
                         elem_id="ft-cmp-models")  # fmt: skip
    with gr.Row(equal_height=True):
        panes = [gr.Chatbot(label=f"Model {i + 1}", height=420, render_markdown=False,
                            visible=i < 2, buttons=["copy", "copy_all"],
                            elem_id=f"ft-cmp-chat-{i}")
                 for i in range(MAX_COMPARED)]  # fmt: skip
    message = message_box("ft-cmp-message")
    with gr.Row():
        send = gr.Button("Send to all", variant="primary", elem_id="ft-cmp-send")
        stop = gr.Button("Stop", variant="secondary", interactive=False, elem_id="ft-cmp-stop")
        clear = gr.Button("Clear", elem_id="ft-cmp-clear")
    # Each model's own conversation: model -> its turns (replies name their model).
    conversations = gr.State({})

    def render(chosen: list[str], shown: dict[str, list[dict]]) -> list[dict]:
        """The panes: one per chosen model, labelled with its name; the rest hidden."""
        return [gr.update(visible=True, label=chosen[i], value=chat_messages(shown[chosen[i]]))
                if i < len(chosen) else gr.update(visible=False, value=[])
                for i in range(MAX_COMPARED)]  # fmt: skip

    @guarded(services, Role.ADMIN)
    def compare(request: gr.Request, chosen: list[str] | None, system_prompt: str, temp: float,
                p: float, max_tokens: Any, seed_value: Any, text: str, history: dict):  # fmt: skip
        chosen = compare_models(chosen or [], services.servable_models())
        text = require((text or "").strip(), "Type a message first.")
        sampling = sampling_from_fields(temperature=temp, top_p=p, max_new_tokens=max_tokens,
                                        seed=seed_value)  # fmt: skip
        asked = {m: [*history.get(m, []), {"role": "user", "content": text}] for m in chosen}
        yield *render(chosen, asked), "", asked, stop_button(True)
        for replies in paced(compare_replies(services.stream_chat, asked, sampling,
                                             system_prompt)):  # fmt: skip
            so_far = {m: [*asked[m], {"role": "assistant", "content": replies[m], "model": m}]
                      for m in chosen}  # fmt: skip
            yield *render(chosen, so_far), "", so_far, stop_button(True)

    @guarded(services, Role.ADMIN)
    def new_comparison(request: gr.Request, chosen: list[str] | None):
        """Other models, or Clear: new conversations for every pane."""
        chosen = list(chosen or [])[:MAX_COMPARED]
        return *render(chosen, {m: [] for m in chosen}), {}

    @guarded(services, Role.ADMIN)
    def stopped(request: gr.Request) -> dict:
        return stop_button(False)

    fresh_choices_on_focus(services, models, names, "compare_models")
    inputs = [models, *sampling_inputs, message, conversations]
    outputs = [*panes, message, conversations, stop]
    send_event = send.click(compare, inputs, outputs, api_name="compare")
    submit_event = message.submit(compare, inputs, outputs, api_name=False)
    wire_stop(stop, stopped, [send_event, submit_event])
    for trigger in (models.change, clear.click):
        trigger(new_comparison, [models], [*panes, conversations], api_name=False)
    return TabWiring()
