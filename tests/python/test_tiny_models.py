"""Tiny checkpoints: each architecture builds, loads in HF, is peaky; the HF reference helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from octavo.testing.tiny_models import (
    ARCHITECTURES,
    LLAMA3_ROPE_PARAMETERS,
    MISTRAL_SLIDING_WINDOW,
    QWEN3_HEAD_DIM,
    hf_greedy,
    hf_logprobs,
    load_hf_model,
    make_tiny_model,
    random_prompts,
    top2_margins,
    train_tiny_tokenizer,
)

HF_CLASSES = {
    "llama": "LlamaForCausalLM",
    "llama3": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}


def _config(model_dir: str) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())


def _tensors(model_dir: str) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                tensors[name] = f.get_tensor(name)
    return tensors


def _logits(model, token_ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([token_ids]), use_cache=False).logits[0].float().numpy()


# ---- tokenizer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Return the number of items in a container.",
        "  leading spaces, tabs\tand\nnew lines\n\n",
        "unicode: héllo wörld, 你好, emoji 🙂, math ∑ x²",
        "def f(x):\n    return x ** 2  # square",
    ],
)
def test_tokenizer_round_trips_text(tiny_tokenizer_dir, text):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id == 1
    assert tokenizer.bos_token_id not in ids[1:]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.decode(ids) == "<s>" + text


def test_tokenizer_special_tokens_and_size(tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    assert len(tokenizer) == 384
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<unk>", "<s>", "</s>", "<pad>"]
    assert (tokenizer.unk_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 2, 3)
    # Merges were learned: common English compresses below one token per character.
    text = "Return the value of the function for the given arguments."
    assert len(tokenizer(text).input_ids) < 0.6 * len(text)


def test_tokenizer_chat_template_renders_turns(tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<s><|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id


def test_tokenizer_training_is_deterministic(tmp_path, tiny_tokenizer_dir):
    again = train_tiny_tokenizer(tmp_path / "again")
    first = (Path(tiny_tokenizer_dir) / "tokenizer.json").read_bytes()
    assert (Path(again) / "tokenizer.json").read_bytes() == first


def test_tokenizer_vocab_size_below_bytes_raises(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_tiny_tokenizer(tmp_path, vocab_size=200)


# ---- models ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_arch_builds_and_loads_in_hf(make_model, arch):
    model_dir = make_model(arch)
    config = _config(model_dir)
    model = load_hf_model(model_dir)
    assert type(model).__name__ == HF_CLASSES[arch]
    assert config["architectures"] == [HF_CLASSES[arch]]
    sizes = (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"])
    assert sizes == (384, 64, 2)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (4, 2)
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 3)
    assert config["dtype"] == "float32"
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (Path(model_dir) / name).is_file(), name

    tensors = _tensors(model_dir)
    norms = [t for name, t in tensors.items() if name.endswith("norm.weight")]
    assert norms and all(not torch.all(t == 1) for t in norms)  # norm weights are not ones

    rope = config["rope_parameters"]
    if arch == "llama3":
        assert rope == LLAMA3_ROPE_PARAMETERS
    else:
        assert rope["rope_type"] == "default"
    if arch == "mistral":
        assert config["sliding_window"] == MISTRAL_SLIDING_WINDOW
    if arch == "qwen2":
        for proj in ("q_proj", "k_proj", "v_proj"):
            bias = tensors[f"model.layers.0.self_attn.{proj}.bias"]
            assert bias.abs().max() > 0.1
    if arch == "qwen3":
        assert config["head_dim"] == QWEN3_HEAD_DIM != 64 // 4
        assert tensors["model.layers.0.self_attn.q_proj.weight"].shape == (4 * QWEN3_HEAD_DIM, 64)
        assert tensors["model.layers.0.self_attn.k_norm.weight"].shape == (QWEN3_HEAD_DIM,)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_greedy_decoding_is_peaky_and_varied(make_model, arch):
    # Over 8 prompts x 16 steps, at least 95% of steps have a top-1/top-2 logit gap above
    # 1e-3, so float error cannot flip a greedy token there.
    model_dir = make_model(arch)
    refs = hf_logprobs(model_dir, random_prompts(8, 384, min_len=4, max_len=40, seed=1), 16)
    margins = np.concatenate([top2_margins(ref.logprobs) for ref in refs])
    assert margins.shape == (8 * 16,)
    assert np.mean(margins > 1e-3) >= 0.95, np.sort(margins)[:10]
    assert np.median(margins) > 0.5
    # ... and the continuations depend on the prompt, rather than collapsing to one token.
    generated = {t for ref in refs for t in ref.token_ids}
    assert len(generated) >= 40
    assert len({tuple(ref.token_ids) for ref in refs}) == 8


def test_same_seed_gives_same_weights_and_other_seed_differs(make_model):
    base = _tensors(make_model("llama"))
    again = _tensors(make_model("llama", seed=0, num_layers=2))  # same model, other cache key
    other = _tensors(make_model("llama", seed=1))
    assert base.keys() == again.keys() == other.keys()
    assert all(torch.equal(base[k], again[k]) for k in base)
    assert not torch.equal(base["lm_head.weight"], other["lm_head.weight"])


def test_sharded_save_writes_index_and_loads_same_model(make_model):
    model_dir = make_model("llama", shard_size="100KB")
    index = json.loads((Path(model_dir) / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2
    assert all((Path(model_dir) / shard).is_file() for shard in shards)
    assert not (Path(model_dir) / "model.safetensors").exists()
    prompt = random_prompts(1, 384, seed=3)[0]
    sharded = _logits(load_hf_model(model_dir), prompt)
    np.testing.assert_array_equal(sharded, _logits(load_hf_model(make_model("llama")), prompt))


@pytest.mark.parametrize(("dtype", "st_dtype"), [("bfloat16", "BF16"), ("float16", "F16")])
def test_half_precision_save_rounds_the_float32_weights(make_model, dtype, st_dtype):
    model_dir = make_model("llama", dtype=dtype)
    assert _config(model_dir)["dtype"] == dtype
    header_len = int.from_bytes((Path(model_dir) / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((Path(model_dir) / "model.safetensors").read_bytes()[8 : 8 + header_len])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {st_dtype}
    half = _tensors(model_dir)
    full = _tensors(make_model("llama"))
    torch_dtype = getattr(torch, dtype)
    assert all(torch.equal(full[k].to(torch_dtype), half[k]) for k in full)
    model = load_hf_model(model_dir, "auto")
    assert next(model.parameters()).dtype == torch_dtype


def test_tied_embeddings_store_no_lm_head(make_model):
    model_dir = make_model("llama", tie_word_embeddings=True)
    assert "lm_head.weight" not in _tensors(model_dir)
    model = load_hf_model(model_dir)
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def test_vocab_can_be_padded_past_the_tokenizer(make_model, tiny_tokenizer_dir, tmp_path):
    model_dir = make_model("qwen2", vocab_size=400)
    assert _config(model_dir)["vocab_size"] == 400
    assert _tensors(model_dir)["model.embed_tokens.weight"].shape == (400, 64)
    with pytest.raises(ValueError, match="vocab_size"):
        make_tiny_model(tmp_path, "llama", tokenizer_dir=tiny_tokenizer_dir, vocab_size=100)


def test_unknown_arch_and_dtype_raise(tmp_path):
    with pytest.raises(ValueError, match="arch"):
        make_tiny_model(tmp_path, "gpt2")
    with pytest.raises(ValueError, match="dtype"):
        make_tiny_model(tmp_path, "llama", dtype="int8")


def test_mistral_sliding_window_changes_logits_from_the_window_on(make_model):
    model_dir = make_model("mistral")
    windowed = load_hf_model(model_dir)
    full = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager", sliding_window=None
    ).eval()
    prompt = random_prompts(1, 384, min_len=40, max_len=40, seed=4)[0]
    a, b = _logits(windowed, prompt), _logits(full, prompt)
    w = MISTRAL_SLIDING_WINDOW
    # Query i sees keys i-w+1 .. i: rows before w see everything either way.
    np.testing.assert_allclose(a[:w], b[:w], rtol=0, atol=1e-5)
    assert np.abs(a[w] - b[w]).max() > 1e-2
    assert np.abs(a[w:] - b[w:]).max(axis=-1).min() > 1e-3


def test_llama3_rope_scaling_changes_logits(make_model):
    model_dir = make_model("llama3")
    scaled = load_hf_model(model_dir)
    unscaled = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=torch.float32,
        attn_implementation="eager",
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    ).eval()
    prompt = random_prompts(1, 384, min_len=40, max_len=40, seed=4)[0]
    diff = np.abs(_logits(scaled, prompt) - _logits(unscaled, prompt)).max(axis=-1)
    assert diff[0] < 1e-5  # one token: rotation cancels
    assert diff[8:].min() > 1e-2


@pytest.mark.parametrize("arch", ["llama", "llama3"])
def test_legacy_rope_config_loads_the_same_model(make_model, arch):
    legacy_dir = make_model(arch, legacy_rope_config=True)
    config = _config(legacy_dir)
    assert "rope_parameters" not in config
    if arch == "llama3":
        assert config["rope_theta"] == LLAMA3_ROPE_PARAMETERS["rope_theta"]
        expected = {k: v for k, v in LLAMA3_ROPE_PARAMETERS.items() if k != "rope_theta"}
        assert config["rope_scaling"] == expected
    else:
        assert config["rope_theta"] == 10000.0
        assert "rope_scaling" not in config
    prompt = random_prompts(1, 384, min_len=40, max_len=40, seed=5)[0]
    np.testing.assert_allclose(
        _logits(load_hf_model(legacy_dir), prompt),
        _logits(load_hf_model(make_model(arch)), prompt),
        rtol=0,
        atol=1e-6,
    )


# ---- HF reference helpers -------------------------------------------------------------


def test_hf_greedy_matches_transformers_generate(tiny_model_dir):
    prompts = random_prompts(3, 384, seed=6)
    ours = hf_greedy(tiny_model_dir, prompts, 12)
    model = load_hf_model(tiny_model_dir)
    for prompt, tokens in zip(prompts, ours):
        out = model.generate(
            torch.tensor([prompt]), do_sample=False, max_new_tokens=12, eos_token_id=None,
            pad_token_id=3,
        )
        assert out[0, len(prompt):].tolist() == tokens


def test_hf_logprobs_steps_match_teacher_forced_prompt_logprobs(tiny_model_dir):
    prompt = random_prompts(1, 384, seed=7)[0]
    (ref,) = hf_logprobs(tiny_model_dir, [prompt], 6)
    assert ref.logprobs.shape == (6, 384)
    assert ref.prompt_logprobs.shape == (len(prompt) - 1, 384)
    np.testing.assert_allclose(np.exp(ref.logprobs).sum(-1), 1.0, atol=1e-12)
    assert ref.token_ids == list(np.argmax(ref.logprobs, axis=-1))
    # Feeding prompt + generated back as a prompt: row j predicts token j + 1.
    (forced,) = hf_logprobs(tiny_model_dir, [prompt + ref.token_ids], 0)
    assert forced.token_ids == [] and forced.logprobs.shape == (0, 384)
    np.testing.assert_allclose(
        forced.prompt_logprobs[: len(prompt) - 1], ref.prompt_logprobs, rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(
        forced.prompt_logprobs[len(prompt) - 1 :], ref.logprobs, rtol=1e-5, atol=1e-4
    )


def test_hf_greedy_stops_after_eos(tiny_model_dir):
    prompt = random_prompts(1, 384, seed=8)[0]
    (free,) = hf_greedy(tiny_model_dir, [prompt], 8)
    (stopped,) = hf_greedy(tiny_model_dir, [prompt], 8, eos_token_id=[free[2]])
    assert stopped == free[: free.index(free[2]) + 1]
