"""Stop strings, stop token ids and the text they leave, end to end, as vLLM.

The oracle is HF's greedy continuation (no stop) and a hand model of vLLM's rule on it:
after each token, the text that is complete so far (the decode of the tokens, less a
trailing half-character); the first token whose new text completes a stop string ends the
request, which keeps every token up to that one and its text up to the stop string.
"""

from __future__ import annotations

import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import hf_greedy, random_prompts

VOCAB = 384
MAX_TOKENS = 40
PROMPTS = random_prompts(12, VOCAB, min_len=3, max_len=20, seed=11)


@pytest.fixture(scope="module")
def model_dir(make_model) -> str:
    return make_model("llama")


@pytest.fixture(scope="module")
def llm(model_dir) -> LLM:
    return LLM(model_dir, max_num_seqs=16, kv_cache_memory_bytes=1 << 22)


@pytest.fixture(scope="module")
def tokenizer(llm):
    return llm.get_tokenizer()


@pytest.fixture(scope="module")
def reference(model_dir) -> list[list[int]]:
    return hf_greedy(model_dir, PROMPTS, MAX_TOKENS)


def greedy(**kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True, **kw)


def run(llm: LLM, params: list[SamplingParams], prompts=PROMPTS):
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    return [o.outputs[0] for o in outputs]


def expected_stop(tokenizer, tokens: list[int], stops: list[str], include: bool = False,
                  min_tokens: int = 0) -> tuple[list[int], str, str | None]:
    """(token ids, text, stop string) vLLM gives for `tokens` cut by `stops`."""
    previous = ""
    for n in range(1, len(tokens) + 1):
        text = tokenizer.decode(tokens[:n], skip_special_tokens=True).rstrip("\ufffd")
        if n > min_tokens:
            for stop in stops:
                at = text.find(stop, max(0, len(previous) - len(stop) + 1))
                if at >= 0:
                    return tokens[:n], text[:at + len(stop) if include else at], stop
        previous = text
    return tokens, tokenizer.decode(tokens, skip_special_tokens=True), None


def middle_stop(tokenizer, tokens: list[int], length: int = 3) -> str:
    """A piece of the reference text from its middle, free of half-characters."""
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    for start in range(len(text) // 2, len(text) - length):
        piece = text[start:start + length]
        if "\ufffd" not in piece:
            return piece
    raise AssertionError(f"no clean piece in {text!r}")


def check(completion, expected) -> None:
    tokens, text, stop = expected
    assert completion.token_ids == tokens
    assert completion.text == text
    assert completion.finish_reason == ("stop" if stop is not None else "length")
    assert completion.stop_reason == stop


@pytest.mark.parametrize("include", [False, True])
def test_stop_string_ends_generation_and_cuts_the_text(llm, tokenizer, reference, include):
    stops = [middle_stop(tokenizer, ref) for ref in reference]
    outs = run(llm, [greedy(stop=s, include_stop_str_in_output=include) for s in stops])
    for out, ref, stop in zip(outs, reference, stops):
        expected = expected_stop(tokenizer, ref, [stop], include)
        assert expected[2] == stop and len(expected[0]) < MAX_TOKENS
        check(out, expected)
    assert llm._engine.stats().num_free_blocks == llm._engine.info.num_kv_blocks


def test_requests_without_stop_strings_in_the_same_batch_are_unaffected(llm, tokenizer, reference):
    params = [greedy(stop=middle_stop(tokenizer, ref)) if i % 2 else greedy()
              for i, ref in enumerate(reference)]
    outs = run(llm, params)
    for i, (out, ref) in enumerate(zip(outs, reference)):
        if i % 2:
            check(out, expected_stop(tokenizer, ref, params[i].stop))
        else:
            check(out, (ref, tokenizer.decode(ref, skip_special_tokens=True), None))


def test_first_stop_string_in_list_order_wins_among_those_completed_together(llm, tokenizer, reference):
    ref = reference[0]
    late = middle_stop(tokenizer, ref, 4)
    early = late[1:3]  # completed by the same token as `late`, or earlier
    outs = run(llm, [greedy(stop=[late, early]), greedy(stop=[early, late])], [PROMPTS[0]] * 2)
    check(outs[0], expected_stop(tokenizer, ref, [late, early]))
    check(outs[1], expected_stop(tokenizer, ref, [early, late]))
    assert outs[1].stop_reason == early


def _multibyte_stops(tokenizer, reference) -> list[tuple[int, str]]:
    """(prompt index, character) for non-ASCII characters the greedy output spells in several tokens."""
    found = []
    for i, ref in enumerate(reference):
        text = tokenizer.decode(ref, skip_special_tokens=True)
        for ch in text:
            if ord(ch) >= 0x80 and ch != "\ufffd" and len(tokenizer.encode(ch, add_special_tokens=False)) > 1:
                found.append((i, ch))
                break
    return found


@pytest.mark.parametrize("include", [False, True])
def test_stop_string_made_of_a_multibyte_character_spread_over_byte_tokens(llm, tokenizer, reference, include):
    found = _multibyte_stops(tokenizer, reference)
    assert len(found) >= 3, "the reference outputs should hold multi-byte characters"
    prompts = [PROMPTS[i] for i, _ in found]
    outs = run(llm, [greedy(stop=ch, include_stop_str_in_output=include) for _, ch in found], prompts)
    for out, (i, ch) in zip(outs, found):
        expected = expected_stop(tokenizer, reference[i], [ch], include)
        assert expected[2] == ch
        # The stop comes with the character's last byte, not before.
        assert tokenizer.decode(expected[0][:-1], skip_special_tokens=True).rstrip("\ufffd").find(ch) < 0
        check(out, expected)


def test_min_tokens_keeps_stop_strings_from_matching_early_text(llm, tokenizer, reference):
    params, expectations = [], []
    for ref in reference:
        stop = tokenizer.decode(ref[2:4], skip_special_tokens=True).rstrip("\ufffd")[:1] or "e"
        first = expected_stop(tokenizer, ref, [stop])
        min_tokens = len(first[0])  # the stop's first match would end the request right here
        params.append(greedy(stop=stop, min_tokens=min_tokens))
        expectations.append(expected_stop(tokenizer, ref, [stop], min_tokens=min_tokens))
    outs = run(llm, params)
    for out, expected, sp in zip(outs, expectations, params):
        assert len(out.token_ids) > sp.min_tokens
        check(out, expected)


def test_stop_token_id_ends_with_its_id_as_stop_reason_and_leaves_its_text_out(llm, tokenizer, reference):
    ref = reference[3]
    stop_id = ref[10]
    first = ref.index(stop_id)
    outs = run(llm, [greedy(stop_token_ids=[stop_id]),
                     greedy(stop_token_ids=[stop_id], include_stop_str_in_output=True)], [PROMPTS[3]] * 2)
    for out in outs:
        assert out.token_ids == ref[:first + 1]
        assert out.finish_reason == "stop" and out.stop_reason == stop_id
    assert outs[0].text == tokenizer.decode(ref[:first], skip_special_tokens=True)
    assert outs[1].text == tokenizer.decode(ref[:first + 1], skip_special_tokens=True)


def test_stop_token_id_before_a_stop_string_wins(llm, tokenizer, reference):
    ref = reference[5]
    stop_id = ref[4]
    first = ref.index(stop_id)
    late = middle_stop(tokenizer, ref)
    assert len(expected_stop(tokenizer, ref, [late])[0]) > first + 1
    out = run(llm, [greedy(stop=late, stop_token_ids=[stop_id])], [PROMPTS[5]])[0]
    assert out.token_ids == ref[:first + 1]
    assert out.stop_reason == stop_id and out.finish_reason == "stop"
    assert out.text == tokenizer.decode(ref[:first], skip_special_tokens=True)


def test_stop_string_found_in_the_step_that_hits_max_tokens_reports_stop(llm, tokenizer, reference):
    ref = reference[2]
    tokens, _, stop = expected = expected_stop(tokenizer, ref, [middle_stop(tokenizer, ref)])
    out = run(llm, [SamplingParams(temperature=0.0, max_tokens=len(tokens), ignore_eos=True, stop=stop)],
              [PROMPTS[2]])[0]
    check(out, expected)


def test_special_token_stop_id_text_with_skip_special_tokens_false(llm, tokenizer, reference):
    # The greedy outputs contain <s> (id 1) and <unk> (id 0) here and there.
    index, ref = next((i, r) for i, r in enumerate(reference) if 1 in r[1:])
    first = ref.index(1, 1)
    params = [greedy(stop_token_ids=[1], skip_special_tokens=False),
              greedy(stop_token_ids=[1], skip_special_tokens=False, include_stop_str_in_output=True)]
    outs = run(llm, params, [PROMPTS[index]] * 2)
    assert outs[0].text == tokenizer.decode(ref[:first], skip_special_tokens=False)
    assert outs[1].text == tokenizer.decode(ref[:first + 1], skip_special_tokens=False)
    assert outs[1].text.endswith("<s>")


def test_stop_strings_survive_preemption(model_dir, tokenizer, reference):
    # A cache of a few blocks forces requests out and back in while they run.
    probe = LLM(model_dir, max_num_seqs=16, kv_cache_memory_bytes=1 << 22, max_model_len=64)
    bytes_per_block = probe._engine.info.kv_cache_bytes // probe._engine.info.num_kv_blocks
    small = LLM(model_dir, max_num_seqs=16, kv_cache_memory_bytes=6 * bytes_per_block, max_model_len=64)
    stops = [middle_stop(tokenizer, ref) for ref in reference]
    outs = run(small, [greedy(stop=s) for s in stops])
    assert small._engine.stats().num_preemptions > 0
    for out, ref, stop in zip(outs, reference, stops):
        check(out, expected_stop(tokenizer, ref, [stop]))
    assert small._engine.stats().num_free_blocks == small._engine.info.num_kv_blocks


def test_seeded_sampling_with_stop_strings_is_a_prefix_of_the_run_without(llm, tokenizer):
    sampled = [SamplingParams(temperature=1.0, seed=100 + i, max_tokens=MAX_TOKENS, ignore_eos=True)
               for i in range(len(PROMPTS))]
    free = run(llm, sampled)
    stops = [middle_stop(tokenizer, list(o.token_ids)) for o in free]
    with_stops = [SamplingParams(temperature=1.0, seed=100 + i, max_tokens=MAX_TOKENS, ignore_eos=True, stop=s)
                  for i, s in enumerate(stops)]
    for out, ref, stop in zip(run(llm, with_stops), free, stops):
        check(out, expected_stop(tokenizer, list(ref.token_ids), [stop]))


# ---- the engine API under it ---------------------------------------------------------


def _native(max_tokens: int, report: bool):
    from octavo._native import _C

    p = _C.SamplingParams()
    p.temperature = 0.0
    p.max_tokens = max_tokens
    p.ignore_eos = True
    p.report_new_tokens = report
    return p


def test_engine_reports_new_tokens_only_for_flagged_requests(llm, reference):
    engine = llm._engine
    engine.add_request(9001, PROMPTS[0], _native(5, report=True))
    engine.add_request(9002, PROMPTS[1], _native(5, report=False))
    seen: dict[int, list[int]] = {9001: [], 9002: []}
    finals = {}
    while engine.has_unfinished():
        for out in engine.step():
            seen[out.request_id].extend(out.new_token_ids)
            if out.finished:
                finals[out.request_id] = out
            else:
                assert out.request_id == 9001 and list(out.token_ids) == [] and len(out.new_token_ids) == 1
    assert seen[9001] == reference[0][:5] == list(finals[9001].token_ids)
    assert seen[9002] == [] and list(finals[9002].token_ids) == reference[1][:5]


def test_engine_finish_request_frees_blocks_and_returns_the_output(llm, reference):
    from octavo._native import _C

    engine = llm._engine
    total = engine.info.num_kv_blocks
    engine.add_request(9003, PROMPTS[2], _native(30, report=True))
    engine.step()
    engine.step()
    assert engine.stats().num_free_blocks < total
    out = engine.finish_request(9003)
    assert out.finished and out.finish_reason == _C.FinishReason.STOP and out.stop_token_id is None
    assert list(out.token_ids) == reference[2][:2]
    assert engine.stats().num_free_blocks == total
    assert not engine.has_unfinished()
    assert engine.step() == []
    assert engine.finish_request(9003) is None
