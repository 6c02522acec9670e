"""Scheduling from the API: priorities, enqueue / wait_for_completion, and aborting.

Which request runs when is read from the order in which the native engine reports requests
finished (a recording wrapper around LLM._engine); what each request generates is checked
against HF transformers, so reordering and preemption must not change any token.
"""

from __future__ import annotations

import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import hf_greedy, random_prompts

VOCAB = 384
BLOCK = 16


class RecordingEngine:
    """Forwards to the native engine and records the ids of requests as they finish."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.finish_order: list[int] = []

    def step(self):
        outputs = self._engine.step()
        self.finish_order += [o.request_id for o in outputs]
        return outputs

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


def recording(llm: LLM) -> RecordingEngine:
    llm._engine = RecordingEngine(llm._engine)
    return llm._engine


def greedy(max_tokens: int) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)


def tokens(prompts: list[list[int]]) -> list[dict]:
    return [{"prompt_token_ids": p} for p in prompts]


@pytest.fixture(scope="module")
def model(make_model) -> str:
    return make_model("llama")


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    return random_prompts(5, VOCAB, min_len=4, max_len=12, seed=11)


@pytest.fixture(scope="module")
def reference(model, prompts) -> list[list[int]]:
    return hf_greedy(model, prompts, 6)


def kv_bytes_for(model: str, num_blocks: int) -> int:
    """kv_cache_memory_bytes that gives exactly num_blocks blocks of BLOCK tokens."""
    probe = LLM(model, max_model_len=64, block_size=BLOCK, kv_cache_memory_bytes=1 << 22)
    info = probe._engine.info
    return info.kv_cache_bytes // info.num_kv_blocks * num_blocks


# ---- priority -------------------------------------------------------------------------


def test_priority_policy_runs_lower_values_first_and_fcfs_among_equals(model, prompts, reference):
    llm = LLM(model, scheduling_policy="priority", max_num_seqs=1)
    engine = recording(llm)
    outputs = llm.generate(tokens(prompts), greedy(6), priority=[2, 0, 1, 0, -1], use_tqdm=False)
    assert engine.finish_order == [int(outputs[i].request_id) for i in (4, 1, 3, 2, 0)]
    # Outputs still come back in input order, each as HF generates it.
    assert [o.outputs[0].token_ids for o in outputs] == reference


def test_fcfs_policy_runs_in_arrival_order(model, prompts):
    llm = LLM(model, max_num_seqs=1)
    engine = recording(llm)
    outputs = llm.generate(tokens(prompts), greedy(6), priority=[0] * len(prompts), use_tqdm=False)
    assert engine.finish_order == [int(o.request_id) for o in outputs]


@pytest.mark.parametrize("policy", ["priority", "fcfs"])
def test_preemption_evicts_the_lowest_priority_request_not_the_newest(model, policy):
    # Three requests that each end up needing 4 blocks share 6. The high-priority one
    # arrives a step after two low-priority ones, so it is the newest running request:
    # FCFS evicts it first, the priority policy evicts the low-priority ones instead.
    long_prompts = random_prompts(3, VOCAB, min_len=BLOCK, max_len=BLOCK, seed=5)
    max_tokens = 4 * BLOCK - BLOCK - 2
    llm = LLM(model, scheduling_policy=policy, max_model_len=4 * BLOCK, block_size=BLOCK,
              kv_cache_memory_bytes=kv_bytes_for(model, 6))
    assert llm._engine.info.num_kv_blocks == 6
    engine = recording(llm)
    low_priority = 5 if policy == "priority" else 0
    low = llm.enqueue(tokens(long_prompts[:2]), greedy(max_tokens), priority=[low_priority] * 2,
                      use_tqdm=False)
    assert engine.step() == []  # both admitted; nothing finishes yet
    [high] = llm.enqueue(tokens(long_prompts[2:]), greedy(max_tokens), use_tqdm=False)
    outputs = llm.wait_for_completion(use_tqdm=False)

    assert engine.stats().num_preemptions > 0
    first = str(engine.finish_order[0])
    assert first == (high if policy == "priority" else low[0])
    assert [o.request_id for o in outputs] == [*low, high]
    expected = hf_greedy(model, long_prompts, max_tokens)
    assert [o.outputs[0].token_ids for o in outputs] == expected


def test_nonzero_priority_without_the_priority_policy_raises_before_any_work(model):
    llm = LLM(model)
    with pytest.raises(ValueError, match="Got priority 3 but Priority scheduling is not enabled"):
        llm.generate(tokens([[5, 6], [7, 8]]), greedy(2), priority=[0, 3], use_tqdm=False)
    with pytest.raises(ValueError, match="Priority scheduling is not enabled"):
        llm.enqueue(tokens([[5, 6]]), greedy(2), priority=[1], use_tqdm=False)
    assert llm._engine.stats().num_steps == 0
    assert not llm._engine.has_unfinished()
    assert llm.wait_for_completion(use_tqdm=False) == []


@pytest.mark.parametrize("priority", [[0], [0, 1, 2]])
def test_priority_list_of_the_wrong_length_raises_naming_both_lengths(model, priority):
    llm = LLM(model, scheduling_policy="priority")
    with pytest.raises(ValueError, match=rf"prompts \(2\) and priority \({len(priority)}\)"):
        llm.generate(tokens([[5, 6], [7, 8]]), greedy(2), priority=priority, use_tqdm=False)
    assert llm._engine.stats().num_steps == 0
    assert not llm._engine.has_unfinished()


@pytest.mark.parametrize("priority, error", [([1.5, 0], TypeError), ([True, 0], TypeError),
                                             ([1 << 63, 0], ValueError), ("01", TypeError)])
def test_priority_values_must_be_64_bit_ints(model, priority, error):
    llm = LLM(model, scheduling_policy="priority")
    with pytest.raises(error, match="priority"):
        llm.generate(tokens([[5, 6], [7, 8]]), greedy(2), priority=priority, use_tqdm=False)
    assert not llm._engine.has_unfinished()


# ---- enqueue / wait_for_completion ------------------------------------------------------


def test_enqueue_returns_string_ids_and_runs_nothing_until_wait(model, prompts, reference):
    llm = LLM(model)
    first = llm.enqueue(tokens(prompts[:3]), greedy(6), use_tqdm=False)
    second = llm.enqueue(tokens(prompts[3:]), [greedy(6), greedy(6)], use_tqdm=False)
    assert all(isinstance(i, str) for i in first + second)
    assert len(set(first + second)) == 5
    assert llm._engine.stats().num_steps == 0
    assert llm.llm_engine.get_num_unfinished_requests() == 5

    outputs = llm.wait_for_completion(use_tqdm=False)
    assert [o.request_id for o in outputs] == first + second
    assert [o.outputs[0].token_ids for o in outputs] == reference
    assert all(o.finished for o in outputs)
    assert not llm.llm_engine.has_unfinished_requests()
    assert llm.wait_for_completion(use_tqdm=False) == []


def test_generate_also_returns_requests_enqueued_before_it(model, prompts, reference):
    llm = LLM(model)
    queued = llm.enqueue(tokens(prompts[:2]), greedy(6), use_tqdm=False)
    outputs = llm.generate(tokens(prompts[2:]), greedy(6), use_tqdm=False)
    assert [o.request_id for o in outputs][:2] == queued
    assert [o.outputs[0].token_ids for o in outputs] == reference


def test_bad_request_in_enqueue_adds_none_of_the_batch(model, prompts, reference):
    llm = LLM(model, max_model_len=64)
    queued = llm.enqueue(tokens(prompts[:1]), greedy(6), use_tqdm=False)
    with pytest.raises(ValueError, match="maximum model length"):
        llm.enqueue(tokens([prompts[1], [5] * 100]), greedy(6), use_tqdm=False)
    outputs = llm.wait_for_completion(use_tqdm=False)
    assert [o.request_id for o in outputs] == queued
    assert outputs[0].outputs[0].token_ids == reference[0]


# ---- aborting ---------------------------------------------------------------------------


def test_aborting_a_running_request_frees_its_blocks_and_spares_the_others(model):
    long_prompts = random_prompts(3, VOCAB, min_len=40, max_len=40, seed=3)
    llm = LLM(model, max_model_len=128, block_size=BLOCK)
    total = llm._engine.info.num_kv_blocks
    ids = llm.enqueue(tokens(long_prompts), greedy(8), use_tqdm=False)
    assert llm._engine.step() == []
    per_request = -(-40 // BLOCK)  # 40 prompt tokens in the cache: 3 blocks each
    assert llm._engine.stats().num_free_blocks == total - 3 * per_request

    llm.llm_engine.abort_request([ids[1]])
    assert llm._engine.stats().num_free_blocks == total - 2 * per_request
    assert llm.llm_engine.get_num_unfinished_requests() == 2

    outputs = llm.wait_for_completion(use_tqdm=False)
    assert [o.request_id for o in outputs] == [ids[0], ids[2]]
    expected = hf_greedy(model, [long_prompts[0], long_prompts[2]], 8)
    assert [o.outputs[0].token_ids for o in outputs] == expected
    assert llm._engine.stats().num_free_blocks == total


def test_aborting_a_waiting_request_drops_it_and_unknown_ids_are_ignored(model, prompts, reference):
    llm = LLM(model, max_num_seqs=1)
    ids = llm.enqueue(tokens(prompts[:3]), greedy(6), use_tqdm=False)
    llm.llm_engine.abort_request(ids[0])  # a single id is accepted too
    llm.llm_engine.abort_request(["no-such-request", "12345"])
    outputs = llm.wait_for_completion(use_tqdm=False)
    assert [o.request_id for o in outputs] == ids[1:]
    assert [o.outputs[0].token_ids for o in outputs] == reference[1:3]
    llm.llm_engine.abort_request(ids[1])  # already finished: nothing happens
    assert not llm._engine.has_unfinished()
