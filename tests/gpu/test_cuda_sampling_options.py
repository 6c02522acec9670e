"""prompt_logprobs, logit_bias / allowed_token_ids / bad_words and beam search on the CUDA
backend, in fp32, against HF transformers and the CPU backend."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from octavo import LLM, BeamSearchParams, SamplingParams
from octavo.testing.tiny_models import hf_logprobs, random_prompts

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    return random_prompts(6, 384, min_len=2, max_len=45, seed=3)


@pytest.fixture(autouse=True)
def _release_engines():
    yield
    gc.collect()


def token_prompts(prompts):
    return [{"prompt_token_ids": p} for p in prompts]


def test_prompt_logprobs_on_the_gpu_match_hf(make_model, prompts):
    model = make_model("llama")
    refs = hf_logprobs(model, prompts, 2)
    # max_num_seqs 2 and 8-token chunks: prompt rows outnumber the logits buffer, so the
    # LM head runs in slices over rows gathered on the device.
    for kwargs in ({}, {"max_num_batched_tokens": 8}):
        llm = LLM(model, device="cuda", dtype="float32", max_model_len=128, max_num_seqs=2,
                  kv_cache_memory_bytes=1 << 26, **kwargs)
        outs = llm.generate(token_prompts(prompts),
                            SamplingParams(temperature=0.0, max_tokens=2, ignore_eos=True, prompt_logprobs=3),
                            use_tqdm=False)
        for out, ref in zip(outs, refs):
            assert out.prompt_logprobs[0] is None and len(out.prompt_logprobs) == len(ref.prompt_token_ids)
            for j, position in enumerate(out.prompt_logprobs[1:]):
                expected = ref.prompt_logprobs[j]
                top = np.argsort(-expected, kind="stable")[:3].tolist()
                assert set(position) == {ref.prompt_token_ids[j + 1], *top}
                for t, lp in position.items():
                    assert lp.logprob == pytest.approx(expected[t], abs=1e-3)
        del llm
        gc.collect()


def test_sampling_options_and_beam_search_agree_between_cpu_and_gpu(make_model, prompts):
    model = make_model("llama")
    params = [
        SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True, logit_bias={50: 4.0, 7: -3.0},
                       repetition_penalty=1.3),
        SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True, allowed_token_ids=[9, 40, 97, 200]),
        SamplingParams(temperature=0.8, max_tokens=8, ignore_eos=True, seed=1, bad_words=["the", "value"]),
    ]
    beam = BeamSearchParams(beam_width=3, max_tokens=5, ignore_eos=True)
    results = {}
    for device in ("cpu", "cuda"):
        extra = {"dtype": "float32", "kv_cache_memory_bytes": 1 << 26} if device == "cuda" else {}
        llm = LLM(model, device=device, max_model_len=128, **extra)
        outs = llm.generate(token_prompts(prompts[:3]), params, use_tqdm=False)
        beams = llm.beam_search(token_prompts(prompts[3:5]), beam)
        results[device] = ([o.outputs[0].token_ids for o in outs], [[s.tokens for s in b.sequences] for b in beams])
        del llm
        gc.collect()
    assert results["cuda"] == results["cpu"]
