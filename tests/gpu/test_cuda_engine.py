"""The engine on the CUDA backend against HF transformers and against itself on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import hf_greedy, hf_logprobs, random_prompts

pytestmark = pytest.mark.gpu

ARCHS = ["llama", "llama3", "mistral", "qwen2", "qwen3"]


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    return random_prompts(8, 384, min_len=3, max_len=40, seed=7)


def token_prompts(prompts):
    return [{"prompt_token_ids": p} for p in prompts]


def greedy(n: int = 16, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True, **kw)


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_greedy_on_the_gpu_matches_hf(make_model, prompts, arch):
    model = make_model(arch)
    llm = LLM(model, device="cuda", dtype="float32", max_model_len=128)
    assert llm._engine.info.device == "cuda"
    outs = llm.generate(token_prompts(prompts), greedy(), use_tqdm=False)
    assert [o.outputs[0].token_ids for o in outs] == hf_greedy(model, prompts, 16)


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_bf16_tokens_agree_with_hf_within_top5(make_model, prompts, arch):
    """bf16 vs HF in bf16: where tokens diverge, each side's token is in the other's top 5."""
    model = make_model(arch)
    llm = LLM(model, device="cuda", dtype="bfloat16", max_model_len=128)
    outs = llm.generate(token_prompts(prompts), greedy(logprobs=5), use_tqdm=False)
    refs = hf_logprobs(model, prompts, 16, dtype="bfloat16")
    agreed = 0
    for out, ref in zip(outs, refs):
        ours = out.outputs[0]
        for step, (token, theirs) in enumerate(zip(ours.token_ids, ref.token_ids)):
            if token == theirs:
                agreed += 1
                continue
            hf_top5 = set(np.argsort(-ref.logprobs[step])[:5].tolist())
            assert token in hf_top5 and theirs in ours.logprobs[step], (step, token, theirs)
            break  # the continuations differ from here on
    # Most steps agree outright; a broken kernel would not get near this.
    assert agreed >= len(prompts) * 16 // 2

def test_chunked_and_preempted_runs_give_the_same_tokens_on_the_gpu(make_model, prompts):
    model = make_model("llama")
    ref = hf_greedy(model, prompts, 16)
    chunked = LLM(model, device="cuda", dtype="float32", max_model_len=128, max_num_batched_tokens=8, max_num_seqs=4)
    assert [o.outputs[0].token_ids for o in chunked.generate(token_prompts(prompts), greedy(), use_tqdm=False)] == ref
    probe = LLM(model, device="cuda", dtype="float32", max_model_len=64, block_size=4, kv_cache_memory_bytes=1 << 20)
    per_block = probe._engine.info.kv_cache_bytes // probe._engine.info.num_kv_blocks
    tight = LLM(model, device="cuda", dtype="float32", max_model_len=64, block_size=4,
                kv_cache_memory_bytes=20 * per_block)
    outs = tight.generate(token_prompts(prompts), greedy(), use_tqdm=False)
    assert tight._engine.stats().num_preemptions > 0
    assert [o.outputs[0].token_ids for o in outs] == ref


def test_seeded_sampling_matches_between_cpu_and_gpu_fp32(make_model, prompts):
    model = make_model("llama")
    sp = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=12, ignore_eos=True, seed=3)
    cpu = LLM(model, device="cpu", max_model_len=128).generate(token_prompts(prompts[:3]), sp, use_tqdm=False)
    gpu = LLM(model, device="cuda", dtype="float32", max_model_len=128).generate(token_prompts(prompts[:3]), sp,
                                                                                 use_tqdm=False)
    assert [o.outputs[0].token_ids for o in cpu] == [o.outputs[0].token_ids for o in gpu]


def test_memory_plan_uses_gpu_memory_utilization(make_model):
    model = make_model("llama")
    small = LLM(model, device="cuda", dtype="bfloat16", gpu_memory_utilization=0.2, max_model_len=128)
    large = LLM(model, device="cuda", dtype="bfloat16", gpu_memory_utilization=0.3, max_model_len=128)
    assert large._engine.info.kv_cache_bytes > small._engine.info.kv_cache_bytes > 0
