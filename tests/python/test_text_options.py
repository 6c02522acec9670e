"""Text options of SamplingParams and the generation defaults, as vLLM documents them.

skip_special_tokens, spaces_between_special_tokens, detokenize, decoded_token in logprobs,
truncate_prompt_tokens, and generation_config="auto" | "vllm" | <folder> with
override_generation_config. Oracles: HF greedy tokens, the tokenizer's decode, and
hand-worked strings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import hf_greedy, make_tiny_model, random_prompts

VOCAB = 384
PROMPTS = random_prompts(12, VOCAB, min_len=3, max_len=20, seed=11)
MAX_TOKENS = 40


@pytest.fixture(scope="module")
def model_dir(make_model) -> str:
    return make_model("llama")


@pytest.fixture(scope="module")
def llm(model_dir) -> LLM:
    return LLM(model_dir, max_num_seqs=16, kv_cache_memory_bytes=1 << 22, max_model_len=128)


@pytest.fixture(scope="module")
def tokenizer(llm):
    return llm.get_tokenizer()


@pytest.fixture(scope="module")
def reference(model_dir) -> list[list[int]]:
    return hf_greedy(model_dir, PROMPTS, MAX_TOKENS)


def greedy(max_tokens: int = MAX_TOKENS, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, **kw)


def run(llm, params, prompts=PROMPTS):
    return [o.outputs[0] for o in llm.generate([{"prompt_token_ids": p} for p in prompts], params,
                                                use_tqdm=False)]


# ---- special tokens ------------------------------------------------------------------


def test_skip_special_tokens_decides_whether_specials_are_in_the_text(llm, tokenizer, reference):
    with_specials = [i for i, ref in enumerate(reference) if {0, 1} & set(ref)]
    assert with_specials, "the greedy outputs should hold <s> or <unk> somewhere"
    prompts = [PROMPTS[i] for i in with_specials]
    skipped = run(llm, greedy(), prompts)
    kept = run(llm, greedy(skip_special_tokens=False), prompts)
    for i, a, b in zip(with_specials, skipped, kept):
        assert a.token_ids == b.token_ids == reference[i]
        assert a.text == tokenizer.decode(reference[i], skip_special_tokens=True)
        assert b.text == tokenizer.decode(reference[i], skip_special_tokens=False)
        assert "<s>" in b.text or "<unk>" in b.text
        assert "<s>" not in a.text and "<unk>" not in a.text


def test_spaces_between_special_tokens_changes_nothing_for_a_byte_level_decoder(llm, tokenizer, reference):
    index = next(i for i, ref in enumerate(reference) if {0, 1} & set(ref))
    a, b = run(llm, [greedy(skip_special_tokens=False, spaces_between_special_tokens=s) for s in (True, False)],
               [PROMPTS[index]] * 2)
    assert a.text == b.text == tokenizer.decode(reference[index], skip_special_tokens=False)


@pytest.fixture(scope="module")
def wordpiece_model(tmp_path_factory) -> str:
    """A tiny model over a 6-token WordPiece vocabulary, half of it special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[SEP]": 1, "[CLS]": 2, "hello": 3, "world": 4, "##s": 5}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", cls_token="[CLS]",
                                   clean_up_tokenization_spaces=False)
    tok_dir = tmp_path_factory.mktemp("wordpiece-tokenizer")
    fast.save_pretrained(tok_dir)
    return make_tiny_model(tmp_path_factory.mktemp("wordpiece-model"), "llama", tokenizer_dir=str(tok_dir),
                           logit_gain=2.0)


def _wordpiece_text(pieces: list[str], specials: set[str], join_specials: bool) -> str:
    """WordPiece decoding by hand: words joined by spaces, "##" pieces glued on; with
    join_specials, a special token right after another has no space before it."""
    text = ""
    for i, piece in enumerate(pieces):
        if i == 0:
            text += piece  # the decoder strips "##" only where it glues a piece on
        elif piece.startswith("##"):
            text += piece[2:]
        elif (join_specials and piece in specials and pieces[i - 1] in specials):
            text += piece
        else:
            text += " " + piece
    return text


def test_spaces_between_special_tokens_false_joins_adjacent_special_tokens(wordpiece_model):
    llm = LLM(wordpiece_model, kv_cache_memory_bytes=1 << 20, max_model_len=64)
    tok = llm.get_tokenizer()
    prompts = [{"prompt_token_ids": [3 + i % 3, 4, i % 3]} for i in range(6)]
    params = SamplingParams(temperature=1.0, seed=5, max_tokens=24, ignore_eos=True, skip_special_tokens=False)
    spaced = llm.generate(prompts, params, use_tqdm=False)
    params_joined = SamplingParams(temperature=1.0, seed=5, max_tokens=24, ignore_eos=True,
                                   skip_special_tokens=False, spaces_between_special_tokens=False)
    joined = llm.generate(prompts, params_joined, use_tqdm=False)
    specials = {"[UNK]", "[SEP]", "[CLS]"}
    adjacent = 0
    for a, b in zip(spaced, joined):
        ids = a.outputs[0].token_ids
        assert b.outputs[0].token_ids == ids
        pieces = tok.convert_ids_to_tokens(ids)
        adjacent += sum(pieces[i] in specials and pieces[i - 1] in specials for i in range(1, len(pieces)))
        assert a.outputs[0].text == _wordpiece_text(pieces, specials, join_specials=False)
        assert b.outputs[0].text == _wordpiece_text(pieces, specials, join_specials=True)
    assert adjacent > 0, "the sampled outputs should put special tokens side by side"


# ---- detokenize and decoded_token ----------------------------------------------------


def test_logprobs_carry_each_tokens_own_text_as_decoded_token(llm, tokenizer, reference):
    outs = run(llm, greedy(12, logprobs=3), PROMPTS[:4])
    byte_pieces = 0
    for out, ref in zip(outs, reference):
        assert out.token_ids == ref[:12]
        for token, position in zip(out.token_ids, out.logprobs):
            assert len(position) >= 3
            for tid, lp in position.items():
                assert lp.decoded_token == tokenizer.decode([tid])  # vLLM: the token alone, specials kept
            byte_pieces += position[token].decoded_token == "\ufffd"
    assert byte_pieces > 0  # lone bytes of longer characters read as U+FFFD, as in vLLM


def test_detokenize_false_gives_empty_text_and_no_decoded_tokens(llm, reference):
    out = run(llm, greedy(8, logprobs=2, detokenize=False), PROMPTS[:1])[0]
    assert out.text == ""
    assert out.token_ids == reference[0][:8]
    assert all(lp.decoded_token is None for position in out.logprobs for lp in position.values())
    # The same batch with detokenize=True for another request still decodes that one.
    both = run(llm, [greedy(8, logprobs=2, detokenize=False), greedy(8, logprobs=2)], PROMPTS[:1] * 2)
    assert both[0].text == "" and both[1].text != ""
    assert all(lp.decoded_token is None for position in both[0].logprobs for lp in position.values())
    assert all(lp.decoded_token is not None for position in both[1].logprobs for lp in position.values())


# ---- truncate_prompt_tokens ----------------------------------------------------------


def test_truncate_prompt_tokens_keeps_the_last_k_token_ids(llm, model_dir):
    prompt = PROMPTS[0] + PROMPTS[1]
    k = 5
    out = llm.generate({"prompt_token_ids": prompt}, greedy(6, truncate_prompt_tokens=k), use_tqdm=False)[0]
    assert out.prompt_token_ids == prompt[-k:]
    assert out.outputs[0].token_ids == hf_greedy(model_dir, [prompt[-k:]], 6)[0]


def test_truncate_prompt_tokens_on_text_keeps_bos_and_the_last_tokens(llm, tokenizer):
    text = "Return a new list containing all items from the iterable in ascending order."
    full = tokenizer.encode(text)
    assert full[0] == tokenizer.bos_token_id and len(full) > 8
    out = llm.generate(text, greedy(3, truncate_prompt_tokens=6), use_tqdm=False)[0]
    # The tokenizer truncates from the left and keeps the special token it adds, as vLLM's.
    assert out.prompt_token_ids == [tokenizer.bos_token_id] + full[-5:]
    assert out.prompt == text


def test_truncate_prompt_tokens_minus_one_means_max_model_len(llm):
    limit = llm._engine.info.max_model_len
    prompt = (PROMPTS[2] * limit)[: limit + 10]
    assert len(prompt) == limit + 10
    with pytest.raises(ValueError, match="max_model_len"):
        llm.generate({"prompt_token_ids": prompt}, greedy(2), use_tqdm=False)
    out = llm.generate({"prompt_token_ids": prompt}, SamplingParams(temperature=0.0, max_tokens=2,
                       truncate_prompt_tokens=-1), use_tqdm=False)[0]
    assert out.prompt_token_ids == prompt[-limit:]
    assert out.outputs[0].finish_reason == "length" and len(out.outputs[0].token_ids) == 1


# ---- generation defaults -------------------------------------------------------------


def _copy_with_generation_config(model_dir: str, dest: Path, values: dict) -> str:
    shutil.copytree(model_dir, dest)
    path = dest / "generation_config.json"
    config = json.loads(path.read_text())
    config.update(values)
    path.write_text(json.dumps(config))
    return str(dest)


def test_generation_config_folder_supplies_the_defaults(model_dir, tmp_path):
    other = _copy_with_generation_config(model_dir, tmp_path / "other",
                                         {"top_k": 7, "min_p": 0.05, "repetition_penalty": 1.2,
                                          "temperature": None, "max_new_tokens": 9})
    llm = LLM(model_dir, generation_config=other, kv_cache_memory_bytes=1 << 20)
    sp = llm.get_default_sampling_params()
    assert (sp.top_k, sp.min_p, sp.repetition_penalty, sp.max_tokens) == (7, 0.05, 1.2, 9)
    assert sp.temperature == 1.0 and sp.top_p == 1.0  # unset or null: vLLM's own
    assert LLM(model_dir, kv_cache_memory_bytes=1 << 20).get_default_sampling_params() == SamplingParams()


def test_override_generation_config_applies_over_the_file_and_over_vllm(model_dir, tmp_path):
    tuned = _copy_with_generation_config(model_dir, tmp_path / "tuned", {"temperature": 0.7, "top_p": 0.8})
    override = {"temperature": 0.0, "max_new_tokens": 5}
    llm = LLM(tuned, override_generation_config=override, kv_cache_memory_bytes=1 << 20)
    sp = llm.get_default_sampling_params()
    assert (sp.temperature, sp.top_p, sp.max_tokens) == (0.0, 1.0, 5)  # greedy resets top_p
    out = llm.generate({"prompt_token_ids": PROMPTS[0]}, use_tqdm=False)[0].outputs[0]
    assert len(out.token_ids) <= 5
    vllm_mode = LLM(tuned, generation_config="vllm", override_generation_config={"top_k": 3},
                    kv_cache_memory_bytes=1 << 20)
    assert vllm_mode.get_default_sampling_params() == SamplingParams(top_k=3)


def test_generation_config_vllm_still_takes_eos_ids_from_the_file(model_dir, tmp_path, reference):
    k = 3
    eos = reference[0][k]
    assert eos not in reference[0][:k]
    dest = _copy_with_generation_config(model_dir, tmp_path / "eos", {"eos_token_id": [2, eos], "temperature": 0.5})
    llm = LLM(dest, generation_config="vllm", kv_cache_memory_bytes=1 << 20)
    assert llm.get_default_sampling_params() == SamplingParams()
    out = llm.generate({"prompt_token_ids": PROMPTS[0]}, SamplingParams(temperature=0.0, max_tokens=10),
                       use_tqdm=False)[0].outputs[0]
    assert out.token_ids == reference[0][:k + 1]
    assert out.finish_reason == "stop" and out.stop_reason is None


def test_generation_config_folder_that_does_not_exist_raises_naming_it(model_dir, tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(OSError, match="nowhere"):
        LLM(model_dir, generation_config=missing, kv_cache_memory_bytes=1 << 20)
    with pytest.raises(TypeError, match="override_generation_config"):
        LLM(model_dir, override_generation_config=[("temperature", 0.5)], kv_cache_memory_bytes=1 << 20)
