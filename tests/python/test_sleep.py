"""LLM.sleep / wake_up on the CPU backend: outputs after waking equal those before sleeping
(and HF's, for greedy), generating while asleep raises, and the host memory sleep frees is
measured with glibc's own allocation counter (mallinfo2)."""

from __future__ import annotations

import ctypes

import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import hf_greedy, random_prompts

VOCAB = 384
MAX_TOKENS = 8
KV_BYTES = 64 << 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


def malloc_in_use() -> int:
    """Bytes malloc has handed out and not had back (heap chunks plus mmapped ones)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def tokens(prompts: list[list[int]]) -> list[dict]:
    return [{"prompt_token_ids": p} for p in prompts]


def token_ids(outputs) -> list[list[int]]:
    return [list(o.outputs[0].token_ids) for o in outputs]


GREEDY = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)
SEEDED = SamplingParams(temperature=1.0, top_p=0.9, seed=1234, max_tokens=MAX_TOKENS, ignore_eos=True)


@pytest.fixture(scope="module")
def model(make_model) -> str:
    # Wide enough that the weights (about 8 MB) stand out of the interpreter's own noise.
    return make_model("llama", hidden_size=256, intermediate_size=1024)


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    return random_prompts(4, VOCAB, min_len=4, max_len=30, seed=21)


@pytest.mark.parametrize("load_format", ["auto", "dummy"])
@pytest.mark.parametrize("level", [1, 2])
def test_outputs_after_wake_up_equal_those_before_sleep(model, prompts, level, load_format):
    llm = LLM(model, max_model_len=128, kv_cache_memory_bytes=KV_BYTES, load_format=load_format, seed=7,
              enable_sleep_mode=True)
    greedy_before = token_ids(llm.generate(tokens(prompts), GREEDY, use_tqdm=False))
    seeded_before = token_ids(llm.generate(tokens(prompts), SEEDED, use_tqdm=False))
    if load_format == "auto":
        assert greedy_before == hf_greedy(model, prompts, MAX_TOKENS)

    assert not llm.llm_engine.is_sleeping()
    llm.sleep(level=level)
    assert llm.llm_engine.is_sleeping()
    with pytest.raises(RuntimeError, match="sleeping"):
        llm.generate(tokens(prompts), GREEDY, use_tqdm=False)
    llm.wake_up()
    assert not llm.llm_engine.is_sleeping()

    assert token_ids(llm.generate(tokens(prompts), GREEDY, use_tqdm=False)) == greedy_before
    assert token_ids(llm.generate(tokens(prompts), SEEDED, use_tqdm=False)) == seeded_before


@pytest.mark.parametrize("level", [1, 2])
def test_sleep_frees_the_kv_cache_and_at_level_2_the_weights(model, prompts, level):
    llm = LLM(model, max_model_len=128, kv_cache_memory_bytes=KV_BYTES)
    before = token_ids(llm.generate(tokens(prompts), GREEDY, use_tqdm=False))
    kv, weights = llm._engine.info.kv_cache_bytes, llm._engine.info.weight_bytes
    assert kv > 60 << 20 and weights > 6 << 20

    awake = malloc_in_use()
    llm.sleep(level=level)
    freed = awake - malloc_in_use()
    slack = 1 << 20  # the interpreter's own allocations in between
    if level == 1:
        # The CPU backend's weights already are in host memory: level 1 keeps them there.
        assert kv - slack <= freed <= kv + slack
    else:
        assert kv + weights - slack <= freed <= kv + weights + slack
    llm.wake_up()
    assert abs(malloc_in_use() - awake) <= slack
    assert token_ids(llm.generate(tokens(prompts), GREEDY, use_tqdm=False)) == before


def test_wake_up_by_tags_needs_both_before_generating(model, prompts):
    llm = LLM(model, max_model_len=128, kv_cache_memory_bytes=KV_BYTES)
    before = token_ids(llm.generate(tokens(prompts), GREEDY, use_tqdm=False))
    llm.sleep(level=2)
    llm.wake_up(tags=["weights"])
    assert llm.llm_engine.is_sleeping()
    with pytest.raises(RuntimeError, match="wake_up"):
        llm.generate(tokens(prompts), GREEDY, use_tqdm=False)
    llm.wake_up(tags=["kv_cache"])
    assert not llm.llm_engine.is_sleeping()
    assert token_ids(llm.generate(tokens(prompts), GREEDY, use_tqdm=False)) == before
    # Sleeping twice, or waking an awake engine, changes nothing.
    llm.sleep()
    llm.sleep(level=2)
    llm.wake_up()
    llm.wake_up()
    assert token_ids(llm.generate(tokens(prompts), GREEDY, use_tqdm=False)) == before


def test_bad_levels_and_tags_and_sleeping_with_requests_in_flight(model, prompts):
    llm = LLM(model, max_model_len=128)
    with pytest.raises(ValueError, match="sleep level must be 1 or 2, got 3"):
        llm.sleep(level=3)
    with pytest.raises(TypeError, match="level"):
        llm.sleep(level="1")
    ids = llm.enqueue(tokens(prompts[:1]), GREEDY, use_tqdm=False)
    with pytest.raises(RuntimeError, match="unfinished requests"):
        llm.sleep()
    assert not llm.llm_engine.is_sleeping()
    [out] = llm.wait_for_completion(use_tqdm=False)
    assert out.request_id == ids[0] and len(out.outputs[0].token_ids) == MAX_TOKENS
    llm.sleep()
    with pytest.raises(ValueError, match="'weights' or 'kv_cache', got 'kv'"):
        llm.wake_up(tags=["kv"])
    with pytest.raises(TypeError, match="tags"):
        llm.wake_up(tags="weights")
    assert llm.llm_engine.is_sleeping()
    llm.wake_up()
    assert not llm.llm_engine.is_sleeping()


def test_sleep_empties_the_prefix_cache(model, prompts):
    llm = LLM(model, max_model_len=128, kv_cache_memory_bytes=KV_BYTES)
    before = token_ids(llm.generate(tokens(prompts), GREEDY, use_tqdm=False))
    hits = llm._engine.stats().num_prefix_cache_hits
    assert llm._engine.stats().num_cached_blocks > 0
    llm.sleep(level=1)
    assert llm._engine.stats().num_cached_blocks == 0
    llm.wake_up()
    # The same prompts again: nothing is found (their blocks' content went with the cache).
    assert token_ids(llm.generate(tokens(prompts), GREEDY, use_tqdm=False)) == before
    assert llm._engine.stats().num_prefix_cache_hits == hits
