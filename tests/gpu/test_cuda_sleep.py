"""Sleep mode on the CUDA backend: the device memory sleep frees, read with the device's own
counter (cudaMemGetInfo through Engine.memory_info), and outputs after wake_up equal those
before sleeping, with decode graphs recorded again at the new addresses."""

from __future__ import annotations

import gc

import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import random_prompts

pytestmark = pytest.mark.gpu

KV_BYTES = 1 << 30
MiB = 1 << 20
GREEDY = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
SEEDED = SamplingParams(temperature=1.0, top_p=0.9, seed=99, max_tokens=16, ignore_eos=True)


@pytest.fixture(autouse=True)
def _release_engines():
    yield
    gc.collect()


@pytest.fixture(scope="module")
def model(make_model) -> str:
    # About 60 MB of float32 weights, so that freeing them shows above allocation granularity.
    return make_model("llama", hidden_size=512, intermediate_size=2048, num_layers=4, num_heads=8, num_kv_heads=4)


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    return [{"prompt_token_ids": p} for p in random_prompts(8, 384, min_len=3, max_len=40, seed=5)]


def used(llm: LLM) -> int:
    return llm._engine.memory_info()[0]


def run(llm: LLM, prompts, params) -> list[list[int]]:
    return [list(o.outputs[0].token_ids) for o in llm.generate(prompts, params, use_tqdm=False)]


@pytest.mark.parametrize("enforce_eager", [False, True])
@pytest.mark.parametrize("level", [1, 2])
def test_sleep_frees_device_memory_and_wake_up_restores_outputs(model, prompts, level, enforce_eager):
    llm = LLM(model, device="cuda", dtype="float32", max_model_len=256, kv_cache_memory_bytes=KV_BYTES,
              enforce_eager=enforce_eager)
    info = llm._engine.info
    greedy_before, seeded_before = run(llm, prompts, GREEDY), run(llm, prompts, SEEDED)
    steps_before = llm._engine.stats().num_graph_steps
    assert (steps_before > 0) == (not enforce_eager)

    awake = used(llm)
    llm.sleep(level=level)
    freed = awake - used(llm)
    # Both levels free the device copies of the weights (level 1 keeps a host copy) and the
    # KV cache (and the recorded graphs, whose memory the driver may keep: not counted).
    expected = info.kv_cache_bytes + info.weight_bytes
    print(f"level {level} eager {enforce_eager}: freed {freed / MiB:.1f} MiB of {awake / MiB:.1f} MiB, "
          f"KV cache + weights {expected / MiB:.1f} MiB, graphs {info.decode_graph_bytes / MiB:.1f} MiB")
    assert freed >= expected - 8 * MiB
    with pytest.raises(RuntimeError, match="sleeping"):
        llm.generate(prompts, GREEDY, use_tqdm=False)

    llm.wake_up(tags=["weights"])
    assert used(llm) - (awake - freed) >= info.weight_bytes - 8 * MiB
    llm.wake_up(tags=["kv_cache"])
    assert not llm.llm_engine.is_sleeping()
    assert abs(used(llm) - awake) <= 64 * MiB

    assert run(llm, prompts, GREEDY) == greedy_before
    assert run(llm, prompts, SEEDED) == seeded_before
    if not enforce_eager:
        assert llm._engine.stats().num_graph_steps == 2 * steps_before  # the re-recorded graphs ran
