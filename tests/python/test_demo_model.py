"""The demo model shipped in the package (python/octavo/demo_model/, made by
tools/train_demo_model.py): small, a plain HF checkpoint, and octavo's greedy output on it
is HF transformers' token for token."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from octavo import LLM, SamplingParams
from octavo.demo import DEMO_MODEL_DIR, DEMO_PROMPTS, demo_model_dir
from octavo.testing.tiny_models import hf_greedy

MAX_BYTES = 20 * 1000 * 1000
EOS = 2


def test_demo_model_is_a_small_hf_checkpoint_with_its_tokenizer():
    names = set(os.listdir(DEMO_MODEL_DIR))
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "README.md"} <= names
    assert sum(os.path.getsize(DEMO_MODEL_DIR / n) for n in names) <= MAX_BYTES
    config = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["eos_token_id"] == EOS


@pytest.fixture(scope="module")
def prompt_ids() -> list[list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir())
    ids = [tokenizer.encode(p) for p in DEMO_PROMPTS]
    assert all(i[0] == tokenizer.bos_token_id for i in ids)  # prompts open with <s>, as in training
    return ids


def test_greedy_output_matches_hf_transformers_in_float32(prompt_ids):
    llm = LLM(demo_model_dir(), dtype="float32")
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompt_ids],
                           SamplingParams(temperature=0.0, max_tokens=32), use_tqdm=False)
    expected = hf_greedy(demo_model_dir(), prompt_ids, 32, eos_token_id=EOS)
    assert [o.outputs[0].token_ids for o in outputs] == expected


def test_text_prompts_tokenize_as_hf_and_the_model_writes_words(prompt_ids):
    llm = LLM(demo_model_dir())
    outputs = llm.generate(list(DEMO_PROMPTS), SamplingParams(temperature=0.0, max_tokens=16),
                           use_tqdm=False)
    assert [o.prompt_token_ids for o in outputs] == prompt_ids
    # A trained model, not a random one: greedy text is mostly ASCII words and spaces.
    text = "".join(o.outputs[0].text for o in outputs)
    letters = sum(c.isalpha() or c.isspace() for c in text)
    assert len(text) > 40 and letters / len(text) > 0.85, text


def test_demo_command_runs_without_torch():
    # torch made unimportable: the demo must need only octavo, tokenizers and transformers.
    code = ("import sys; sys.modules['torch'] = None; "
            "from octavo.__main__ import main; main(['demo', '--max-tokens', '8'])")
    env = dict(os.environ, OCTAVO_LOG="quiet")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(DEMO_PROMPTS) + 1
    for prompt, line in zip(DEMO_PROMPTS, lines):
        assert line.startswith(repr(prompt) + " -> ")
    assert "output tokens/s" in lines[-1]
