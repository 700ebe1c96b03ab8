"""The training twin of SmolLM2's chat template: the same text as the model's own template,
with the loss mask on each assistant answer and its end-of-turn token."""

import pytest

from ftapp.training.templates import SMOLLM2_TRAINING_TEMPLATE, training_template_for

CONVERSATIONS = [
    [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"},
     {"role": "assistant", "content": "6, of course."}],
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(count_tokens):
    return count_tokens.tokenizer  # the bundled model's


def test_the_bundled_template_has_a_twin(tokenizer):
    assert training_template_for(tokenizer.chat_template) == SMOLLM2_TRAINING_TEMPLATE
    assert training_template_for(tokenizer.chat_template + "\n") == SMOLLM2_TRAINING_TEMPLATE


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_the_twin_renders_exactly_the_same_text(tokenizer, conversation, add_generation_prompt):
    own = tokenizer.apply_chat_template(conversation, tokenize=False,
                                        add_generation_prompt=add_generation_prompt)  # fmt: skip
    twin = tokenizer.apply_chat_template(conversation, chat_template=SMOLLM2_TRAINING_TEMPLATE,
                                         tokenize=False,
                                         add_generation_prompt=add_generation_prompt)  # fmt: skip
    assert twin == own


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_the_mask_covers_the_answers_and_their_end_of_turn(tokenizer, conversation):
    encoded = tokenizer.apply_chat_template(
        conversation, chat_template=SMOLLM2_TRAINING_TEMPLATE, tokenize=True, return_dict=True,
        return_assistant_tokens_mask=True,
    )  # fmt: skip
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    learned = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    answers = [m["content"] + "<|im_end|>" for m in conversation if m["role"] == "assistant"]
    assert learned == "".join(answers)


def test_unknown_templates_have_no_twin():
    assert training_template_for(None) is None
    assert training_template_for("") is None
    assert training_template_for("{{ messages[0]['content'] }}") is None
