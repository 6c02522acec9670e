"""Shared KV blocks on the CUDA backend: prefix-cache hits and n > 1 samples (whose forks
copy a partial block on the device) give the tokens the CPU engine gives."""

from __future__ import annotations

import gc

import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import hf_greedy, random_prompts

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _release_engines():
    yield
    gc.collect()


def test_prefix_hits_and_forked_samples_on_the_gpu_match_the_cpu(make_model):
    model = make_model("llama")
    system = random_prompts(1, 384, min_len=37, max_len=37, seed=21)[0]
    prompts = [system + tail for tail in random_prompts(6, 384, min_len=1, max_len=12, seed=22)]
    token_prompts = [{"prompt_token_ids": p} for p in prompts]
    greedy = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    forked = SamplingParams(temperature=1.0, top_k=1, n=4, max_tokens=8, ignore_eos=True)
    gpu = LLM(model, device="cuda", dtype="float32", max_model_len=128, kv_cache_memory_bytes=1 << 28)
    first = gpu.generate(token_prompts, greedy, use_tqdm=False)
    again = gpu.generate(token_prompts, greedy, use_tqdm=False)
    samples = gpu.generate(token_prompts, forked, use_tqdm=False)
    ref = hf_greedy(model, prompts, 8)
    assert [list(o.outputs[0].token_ids) for o in first] == ref
    assert [list(o.outputs[0].token_ids) for o in again] == ref
    assert all(o.num_cached_tokens > 0 for o in again)
    # top_k=1 samples are greedy: each of the four, three of them on copied blocks, is ref.
    assert [[list(c.token_ids) for c in o.outputs] for o in samples] == [[r] * 4 for r in ref]
    assert gpu._engine.stats().num_prefix_cache_hits > 0
