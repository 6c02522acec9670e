"""LLM.beam_search against HF transformers' beam search and a float64 replay of vLLM's.

Where the two algorithms coincide (no EOS: octavo's ignore_eos, HF's eos_token_id=None;
every beam then has one length, see octavo/beam_search.py) octavo must return HF's
sequences token for token, in HF's order, with HF's scores. With EOS in play, vLLM's
algorithm is replayed here on HF's float64 logprobs.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from octavo import LLM, BeamSearchParams, SamplingParams
from octavo.beam_search import BeamSearchOutput, BeamSearchSequence
from octavo.testing.tiny_models import load_hf_model, random_prompts
from reference_sampling import raw_logprobs

VOCAB = 384


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    return random_prompts(3, VOCAB, min_len=3, max_len=20, seed=21)


def hf_beam_search(model_dir: str, prompt: list[int], beam_width: int, max_tokens: int,
                   length_penalty: float) -> tuple[list[list[int]], list[float]]:
    """HF's beam search with EOS disabled: generated tokens and cumulative logprobs, best first."""
    model = load_hf_model(model_dir)
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), num_beams=beam_width, do_sample=False,
                             max_new_tokens=max_tokens, num_return_sequences=beam_width,
                             length_penalty=length_penalty, early_stopping=False, eos_token_id=None,
                             pad_token_id=model.generation_config.pad_token_id,
                             return_dict_in_generate=True, output_scores=True)
    sequences = [row[len(prompt):].tolist() for row in out.sequences]
    if beam_width == 1:  # HF runs greedy search: its scores are the raw logits per step
        steps = [torch.log_softmax(scores[0].double(), -1) for scores in out.scores]
        return sequences, [float(sum(step[t] for step, t in zip(steps, sequences[0])))]
    # HF divides by generated_length ** length_penalty; all are max_tokens long here.
    cumulative = [float(s) * max_tokens**length_penalty for s in out.sequences_scores]
    return sequences, cumulative


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("beam_width,length_penalty", [(1, 1.0), (2, 0.0), (3, 1.0), (4, 2.0)])
def test_without_eos_matches_hf_beam_search_token_for_token(make_model, prompts, arch, beam_width, length_penalty):
    model_dir = make_model(arch)
    llm = LLM(model_dir, max_model_len=64)
    max_tokens = 6
    outputs = llm.beam_search([{"prompt_token_ids": p} for p in prompts],
                              BeamSearchParams(beam_width=beam_width, max_tokens=max_tokens, ignore_eos=True,
                                               length_penalty=length_penalty))
    assert len(outputs) == len(prompts)
    for prompt, output in zip(prompts, outputs):
        want, want_cumulative = hf_beam_search(model_dir, prompt, beam_width, max_tokens, length_penalty)
        assert isinstance(output, BeamSearchOutput)
        assert [s.tokens[len(prompt):] for s in output.sequences] == want
        for seq, cumulative in zip(output.sequences, want_cumulative):
            assert seq.tokens[:len(prompt)] == prompt
            assert seq.cum_logprob == pytest.approx(cumulative, abs=1e-3)
            assert seq.finish_reason == "length"
            assert len(seq.logprobs) == max_tokens
            for token, step in zip(seq.tokens[len(prompt):], seq.logprobs):
                assert token in step and len(step) <= 2 * beam_width + 1
            assert seq.cum_logprob == pytest.approx(
                sum(step[t].logprob for t, step in zip(seq.tokens[len(prompt):], seq.logprobs)), abs=1e-6)


def replay_vllm_beam_search(model_dir: str, prompt: list[int], beam_width: int, max_tokens: int, eos: int,
                            length_penalty: float) -> tuple[list[tuple[list[int], float]], int]:
    """vLLM's algorithm (see octavo/beam_search.py) on HF's float64 raw logprobs: the best
    beam_width (tokens, cumulative logprob), and how many candidates EOS finished."""
    model = load_hf_model(model_dir)

    def score(beam):
        tokens, cumulative = beam
        length = len(tokens) - (1 if tokens[-1] == eos else 0)
        return cumulative / length**length_penalty

    beams, completed = [(list(prompt), 0.0)], []
    with torch.no_grad():
        for _ in range(max_tokens):
            candidates = []
            for tokens, cumulative in beams:
                logits = model(input_ids=torch.tensor([tokens]), use_cache=False).logits[0, -1].double().numpy()
                logprobs = raw_logprobs(logits)
                for token in np.argsort(-logprobs, kind="stable")[:2 * beam_width].tolist():
                    child = (tokens + [token], cumulative + logprobs[token])
                    (completed if token == eos else candidates).append(child)
            beams = sorted(candidates, key=score, reverse=True)[:beam_width]
    return sorted(completed + beams, key=score, reverse=True)[:beam_width], len(completed)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 3.0])
def test_with_eos_matches_a_replay_of_vllms_algorithm(make_model, prompts, length_penalty):
    model_dir = make_model("llama")
    llm = LLM(model_dir, max_model_len=64)
    beam_width, max_tokens = 3, 5
    # Make EOS a token the model likes, so beams really finish early: the greedy second
    # token of the first prompt. beam_search takes EOS from the tokenizer, as vLLM.
    first = llm.generate({"prompt_token_ids": prompts[0]}, SamplingParams(temperature=0.0, max_tokens=2),
                         use_tqdm=False)[0].outputs[0].token_ids
    eos = first[1]
    tokenizer = copy.deepcopy(llm.get_tokenizer())
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    assert tokenizer.eos_token_id == eos
    llm.set_tokenizer(tokenizer)
    outputs = llm.beam_search([{"prompt_token_ids": p} for p in prompts],
                              BeamSearchParams(beam_width=beam_width, max_tokens=max_tokens,
                                               length_penalty=length_penalty))
    finished_early = num_completed = 0
    for prompt, output in zip(prompts, outputs):
        want, completed = replay_vllm_beam_search(model_dir, prompt, beam_width, max_tokens, eos, length_penalty)
        num_completed += completed
        assert [s.tokens for s in output.sequences] == [tokens for tokens, _ in want]
        for seq, (tokens, cumulative) in zip(output.sequences, want):
            assert seq.cum_logprob == pytest.approx(cumulative, abs=1e-3)
            ended = tokens[-1] == eos
            assert seq.finish_reason == ("stop" if ended else "length")
            finished_early += ended and len(tokens) < len(prompt) + max_tokens
    assert num_completed > 0  # EOS did finish candidates
    if length_penalty <= 1.0:  # and, unless long beams are favoured, some of them win
        assert finished_early > 0


def test_text_prompts_and_token_prompts_give_the_same_beams(make_model):
    model_dir = make_model("llama")
    llm = LLM(model_dir, max_model_len=64)
    tokenizer = llm.get_tokenizer()
    text = "Return the value"
    ids = tokenizer.encode(text)
    params = BeamSearchParams(beam_width=2, max_tokens=4, ignore_eos=True)
    from_text, from_ids = llm.beam_search([text, {"prompt_token_ids": ids}], params)
    assert [s.tokens for s in from_text.sequences] == [s.tokens for s in from_ids.sequences]
    for seq in from_text.sequences:
        assert isinstance(seq, BeamSearchSequence)
        assert seq.tokens[:len(ids)] == ids
        assert seq.text == tokenizer.decode(seq.tokens)  # vLLM decodes the prompt too
    single = llm.beam_search(text, params)
    assert [s.tokens for s in single[0].sequences] == [s.tokens for s in from_text.sequences]
    assert not llm._engine.has_unfinished()


def test_beams_stop_growing_at_max_model_len(make_model):
    model_dir = make_model("llama")
    llm = LLM(model_dir, max_model_len=12)
    prompt = list(range(10, 20))
    out = llm.beam_search([{"prompt_token_ids": prompt}], BeamSearchParams(beam_width=2, max_tokens=8, ignore_eos=True))
    assert [len(s.tokens) for s in out[0].sequences] == [12, 12]
    assert all(s.finish_reason == "length" for s in out[0].sequences)


def test_beams_share_the_prompt_blocks_through_the_prefix_cache(make_model):
    """Each step re-submits every beam as prompt + its tokens (as vLLM); with prefix caching
    on, the prompt's full blocks are computed once and found by every later beam pass, and
    the beams are the same as with caching off."""
    model_dir = make_model("llama")
    prompt = [{"prompt_token_ids": list(range(5, 5 + 40))}]  # 40 tokens: 2 full 16-token blocks
    params = BeamSearchParams(beam_width=3, max_tokens=5, ignore_eos=True)
    cached = LLM(model_dir, max_model_len=64, block_size=16)
    uncached = LLM(model_dir, max_model_len=64, block_size=16, enable_prefix_caching=False)
    with_cache = cached.beam_search(prompt, params)[0]
    without = uncached.beam_search(prompt, params)[0]
    assert [s.tokens for s in with_cache.sequences] == [s.tokens for s in without.sequences]
    hits = cached._engine.stats().num_prefix_cache_hits
    computed = cached._engine.stats().num_prompt_tokens_computed
    # 5 steps; every beam pass after the first finds at least the prompt's 32 cached tokens.
    assert hits >= 32 * (1 + 3 * 3)
    assert computed < uncached._engine.stats().num_prompt_tokens_computed
    assert uncached._engine.stats().num_prefix_cache_hits == 0
