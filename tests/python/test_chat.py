"""LLM.chat renders conversations as HF's apply_chat_template does and generates from them.

The oracle for the prompt is HF's own tokenization of the rendered chat
(tokenizer.apply_chat_template(..., tokenize=True)); for the output, generate() on those ids.
"""

from __future__ import annotations

import pytest

from octavo import LLM, SamplingParams

CONVERSATION = [
    {"role": "system", "content": "You answer in short sentences."},
    {"role": "user", "content": "What does a dict do?"},
]
SECOND = [
    {"role": "user", "content": "Name a sorting function."},
    {"role": "assistant", "content": "sorted"},
    {"role": "user", "content": "And another?"},
]
# Loops over each message's content parts: LLM.chat must pass them as OpenAI-style parts.
PARTS_TEMPLATE = (
    "{% for message in messages %}[{{ message['role'] }}]"
    "{% for part in message['content'] %}<{{ part['text'] }}>{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
)
# Uses content as one string, and a chat_template_kwargs variable.
STRING_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] | upper }}: {{ message['content'] }}\n"
    "{% endfor %}{% if greeting %}{{ greeting }}\n{% endif %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def greedy(max_tokens: int = 8) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)


@pytest.fixture(scope="module")
def llm(make_model) -> LLM:
    return LLM(make_model("llama"), max_num_seqs=8, kv_cache_memory_bytes=1 << 21)


@pytest.fixture(scope="module")
def tokenizer(llm):
    return llm.get_tokenizer()


def hf_ids(tokenizer, conversation, **kwargs) -> list[int]:
    out = tokenizer.apply_chat_template(conversation, tokenize=True, **kwargs)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def same_as_generate(llm, chat_outputs, ids_list, params) -> None:
    direct = llm.generate([{"prompt_token_ids": ids} for ids in ids_list], params, use_tqdm=False)
    for chat_out, gen_out, ids in zip(chat_outputs, direct, ids_list):
        assert chat_out.prompt_token_ids == ids
        assert chat_out.prompt is None  # a token prompt, as in vLLM
        assert chat_out.outputs[0].token_ids == gen_out.outputs[0].token_ids
        assert chat_out.outputs[0].text == gen_out.outputs[0].text


def test_one_conversation_uses_the_tokenizers_template(llm, tokenizer):
    expected = hf_ids(tokenizer, CONVERSATION, add_generation_prompt=True)
    assert tokenizer.decode(expected).endswith("<|assistant|>\n")
    outs = llm.chat(CONVERSATION, greedy(), use_tqdm=False)
    assert len(outs) == 1
    same_as_generate(llm, outs, [expected], greedy())


def test_a_list_of_conversations_gives_one_output_each_in_order(llm, tokenizer):
    outs = llm.chat([CONVERSATION, SECOND, CONVERSATION[1:]], greedy(), use_tqdm=False)
    expected = [hf_ids(tokenizer, c, add_generation_prompt=True) for c in (CONVERSATION, SECOND, CONVERSATION[1:])]
    same_as_generate(llm, outs, expected, greedy())


def test_without_generation_prompt_and_continuing_the_final_message(llm, tokenizer):
    plain = llm.chat(SECOND, greedy(), add_generation_prompt=False, use_tqdm=False)
    assert plain[0].prompt_token_ids == hf_ids(tokenizer, SECOND, add_generation_prompt=False)
    partial = SECOND[:1] + [{"role": "assistant", "content": "I would use"}]
    cont = llm.chat(partial, greedy(), add_generation_prompt=False, continue_final_message=True, use_tqdm=False)
    expected = hf_ids(tokenizer, partial, continue_final_message=True)
    assert tokenizer.decode(expected).endswith("I would use")  # the final turn is left open
    same_as_generate(llm, cont, [expected], greedy())


def test_text_parts_are_joined_with_newlines_for_a_string_template(llm, tokenizer):
    parts = [{"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]}]
    joined = [{"role": "user", "content": "first\nsecond"}]
    outs = llm.chat(parts, greedy(), use_tqdm=False)
    same_as_generate(llm, outs, [hf_ids(tokenizer, joined, add_generation_prompt=True)], greedy())


def test_template_looping_over_content_gets_openai_parts(llm, tokenizer):
    conversation = [{"role": "user", "content": "plain"},
                    {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    outs = llm.chat(conversation, greedy(), chat_template=PARTS_TEMPLATE, use_tqdm=False)
    rendered = "[user]<plain>[assistant]<a><b>[assistant]"
    expected = tokenizer.encode(rendered, add_special_tokens=False)
    same_as_generate(llm, outs, [expected], greedy())
    # Forcing "string" hands the template a str, whose characters it then loops over.
    forced = llm.chat(conversation[:1], greedy(), chat_template=PARTS_TEMPLATE,
                      chat_template_content_format="string", use_tqdm=False)
    assert tokenizer.decode(forced[0].prompt_token_ids) == "[user]<><><><><>[assistant]"


def test_given_template_and_template_kwargs_are_used(llm, tokenizer):
    outs = llm.chat(CONVERSATION, greedy(), chat_template=STRING_TEMPLATE,
                    chat_template_kwargs={"greeting": "Hi there"}, use_tqdm=False)
    rendered = ("<s>SYSTEM: You answer in short sentences.\nUSER: What does a dict do?\n"
                "Hi there\nASSISTANT:")
    expected = tokenizer.encode(rendered, add_special_tokens=False)
    assert expected[0] == tokenizer.bos_token_id and expected.count(tokenizer.bos_token_id) == 1
    same_as_generate(llm, outs, [expected], greedy())


def test_chat_with_per_conversation_sampling_params_and_stop(llm, tokenizer):
    params = [greedy(6), SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True, seed=3)]
    outs = llm.chat([CONVERSATION, SECOND], params, use_tqdm=False)
    expected = [hf_ids(tokenizer, c, add_generation_prompt=True) for c in (CONVERSATION, SECOND)]
    same_as_generate(llm, outs, expected, params)
    assert [len(o.outputs[0].token_ids) for o in outs] == [6, 12]


def test_chat_without_sampling_params_uses_the_defaults(llm, tokenizer):
    outs = llm.chat(CONVERSATION, use_tqdm=False)
    assert len(outs[0].outputs[0].token_ids) <= llm.get_default_sampling_params().max_tokens


# ---- bad input: each followed by a good request on the same LLM ----------------------


def still_chats(llm, tokenizer) -> None:
    assert not llm._engine.has_unfinished()
    outs = llm.chat(CONVERSATION, greedy(3), use_tqdm=False)
    same_as_generate(llm, outs, [hf_ids(tokenizer, CONVERSATION, add_generation_prompt=True)], greedy(3))


def test_continue_final_message_with_add_generation_prompt_raises(llm, tokenizer):
    steps = llm._engine.stats().num_steps
    with pytest.raises(ValueError, match="continue_final_message.*add_generation_prompt"):
        llm.chat(SECOND, greedy(), continue_final_message=True, use_tqdm=False)
    assert llm._engine.stats().num_steps == steps
    still_chats(llm, tokenizer)


def test_tokenizer_without_chat_template_raises_unless_one_is_given(llm, tokenizer):
    saved = tokenizer.chat_template
    tokenizer.chat_template = None
    try:
        with pytest.raises(ValueError, match="no chat template"):
            llm.chat(CONVERSATION, greedy(), use_tqdm=False)
        outs = llm.chat(CONVERSATION, greedy(), chat_template=STRING_TEMPLATE, use_tqdm=False)
        assert tokenizer.decode(outs[0].prompt_token_ids).endswith("ASSISTANT:")
    finally:
        tokenizer.chat_template = saved
    still_chats(llm, tokenizer)


@pytest.mark.parametrize("part", [{"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                                  {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}])
def test_content_part_other_than_text_raises_naming_its_type(llm, tokenizer, part):
    conversation = [{"role": "user", "content": [{"type": "text", "text": "look"}, part]}]
    with pytest.raises(ValueError, match=part["type"]):
        llm.chat([CONVERSATION, conversation], greedy(), use_tqdm=False)
    still_chats(llm, tokenizer)


def test_unknown_content_format_raises(llm, tokenizer):
    with pytest.raises(ValueError, match="chat_template_content_format"):
        llm.chat(CONVERSATION, greedy(), chat_template_content_format="markdown", use_tqdm=False)
    still_chats(llm, tokenizer)


def test_message_without_role_raises_type_error(llm, tokenizer):
    with pytest.raises(TypeError, match="role"):
        llm.chat([{"content": "hi"}], greedy(), use_tqdm=False)
    still_chats(llm, tokenizer)


def test_template_that_raises_gives_value_error(llm, tokenizer):
    template = "{{ raise_exception('only user turns, please') }}"
    with pytest.raises(ValueError, match="only user turns"):
        llm.chat(CONVERSATION, greedy(), chat_template=template, use_tqdm=False)
    still_chats(llm, tokenizer)


def test_llm_takes_no_chat_template_argument_as_vllm(make_model):
    with pytest.raises(TypeError, match="chat_template"):
        LLM(make_model("llama"), chat_template=STRING_TEMPLATE)


@pytest.mark.parametrize("template, expected", [
    (PARTS_TEMPLATE, "openai"),
    (STRING_TEMPLATE, "string"),
    ("{% for m in messages %}{% for c in m.content %}{{ c.text }}{% endfor %}{% endfor %}", "openai"),
    ("{% for m in messages[1:] %}{% for c in m['content'] | selectattr('type', 'equalto', 'text') %}"
     "{{ c['text'] }}{% endfor %}{% endfor %}", "openai"),
    ("{% set first = messages[0] %}{% for c in first['content'] %}{{ c['text'] }}{% endfor %}", "openai"),
    ("{% for m in messages %}{% for ch in m['role'] %}{{ ch }}{% endfor %}{{ m['content'] }}{% endfor %}",
     "string"),
    ("{% for m in messages %}{{ m['content'] }", "string"),  # does not parse: vLLM's default
])
def test_content_format_auto_detects_loops_over_message_content(template, expected):
    from octavo.chat import detect_content_format

    assert detect_content_format(template) == expected
