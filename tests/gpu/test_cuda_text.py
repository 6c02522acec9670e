"""Chat, stop strings and text options on the CUDA backend give what the CPU backend gives.

Text handling lives above the engine (Python) plus two engine calls (report_new_tokens,
finish_request), so fp32 runs on the two backends must agree token for token and string
for string; tests/python checks the CPU side against HF transformers.
"""

from __future__ import annotations

import gc

import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import random_prompts

pytestmark = pytest.mark.gpu

PROMPTS = random_prompts(12, 384, min_len=3, max_len=20, seed=11)
CONVERSATIONS = [
    [{"role": "user", "content": "What does a dict do?"}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": [{"type": "text", "text": "Name"}, {"type": "text", "text": "a sort."}]}],
]


@pytest.fixture(scope="module")
def model(make_model) -> str:
    return make_model("llama")


@pytest.fixture(autouse=True)
def _release_engines():
    yield
    gc.collect()


def both(model: str) -> tuple[LLM, LLM]:
    cpu = LLM(model, device="cpu", max_model_len=128, kv_cache_memory_bytes=1 << 22)
    gpu = LLM(model, device="cuda", dtype="float32", max_model_len=128, kv_cache_memory_bytes=1 << 26)
    assert gpu._engine.info.device == "cuda"
    return cpu, gpu


def fields(outputs) -> list[tuple]:
    return [(o.prompt_token_ids, o.outputs[0].token_ids, o.outputs[0].text, o.outputs[0].finish_reason,
             o.outputs[0].stop_reason) for o in outputs]


def test_stop_strings_and_stop_ids_on_the_gpu_match_the_cpu(model):
    cpu, gpu = both(model)
    free = cpu.generate([{"prompt_token_ids": p} for p in PROMPTS],
                        SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True), use_tqdm=False)
    params = []
    for i, out in enumerate(free):
        text = out.outputs[0].text
        start = next(k for k in range(len(text) // 2, len(text) - 2) if "\ufffd" not in text[k:k + 2])
        stop = text[start:start + 2]
        params.append(SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True, stop=[stop],
                                     include_stop_str_in_output=bool(i % 2),
                                     stop_token_ids=[out.outputs[0].token_ids[30]] if i % 3 == 0 else None))
    prompts = [{"prompt_token_ids": p} for p in PROMPTS]
    expected = fields(cpu.generate(prompts, params, use_tqdm=False))
    assert sum(e[3] == "stop" for e in expected) == len(PROMPTS)
    assert fields(gpu.generate(prompts, params, use_tqdm=False)) == expected
    stats = gpu._engine.stats()
    assert stats.num_free_blocks == gpu._engine.info.num_kv_blocks and stats.num_running == 0


def test_chat_and_text_options_on_the_gpu_match_the_cpu(model):
    cpu, gpu = both(model)
    params = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True, logprobs=2, skip_special_tokens=False)
    expected = cpu.chat(CONVERSATIONS, params, use_tqdm=False)
    got = gpu.chat(CONVERSATIONS, params, use_tqdm=False)
    assert fields(got) == fields(expected)
    for a, b in zip(got, expected):
        for pa, pb in zip(a.outputs[0].logprobs, b.outputs[0].logprobs):
            assert {t: lp.decoded_token for t, lp in pa.items()} == {t: lp.decoded_token for t, lp in pb.items()}
    truncated = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True, truncate_prompt_tokens=4,
                               detokenize=False)
    prompts = [{"prompt_token_ids": p} for p in PROMPTS[:4]]
    assert fields(gpu.generate(prompts, truncated, use_tqdm=False)) == fields(
        cpu.generate(prompts, truncated, use_tqdm=False))
