"""Chat templates for assistant-only loss.

TRL masks the loss to the assistant turns by rendering with `{% generation %}` markers. It can
patch the templates of well-known model families, but not SmolLM2's ChatML template, so we
carry a training twin of it here: it renders exactly the same text (a test checks that), with
the markers around each answer and its end-of-turn token, so the model learns to stop.
"""

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SMOLLM2_TRAINING_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\n' }}{% else %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Inference template -> its training twin, for templates TRL can't patch by itself.
TRAINING_TWINS = {SMOLLM2_TEMPLATE: SMOLLM2_TRAINING_TEMPLATE}


def training_template_for(chat_template: str | None) -> str | None:
    """Our training twin of a known template, or None (TRL patches it, or it can't be done)."""
    if not chat_template:
        return None
    return TRAINING_TWINS.get(chat_template.strip())
