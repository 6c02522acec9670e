"""The built-in default for `python -m octavo`: a small random Llama made on the spot.

No download and no PyTorch: a byte-level BPE tokenizer is trained with `tokenizers` on the
docstrings of Python's standard library, and random weights are written with numpy and
safetensors into an HF-format folder (cached under ~/.cache/octavo). The text it generates
is gibberish: the point is to run the real engine end to end on any machine.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

DEMO_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 1024,
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 32,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}

_STDLIB_MODULES = ("os", "json", "collections", "itertools", "functools", "pathlib", "re", "string",
                   "textwrap", "argparse", "logging", "subprocess", "shutil", "typing", "dataclasses")


def _corpus() -> list[str]:
    import importlib
    import inspect

    texts = []
    for name in _STDLIB_MODULES:
        module = importlib.import_module(name)
        for obj in [module, *vars(module).values()]:
            doc = inspect.getdoc(obj) if callable(obj) or inspect.ismodule(obj) else None
            if doc:
                texts.append(doc)
    return texts


def _train_tokenizer(out_dir: str, vocab_size: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(out_dir)


def _write_weights(out_dir: str, c: dict, seed: int = 0) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    h, inter, d = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d

    def dense(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    tensors = {"model.embed_tokens.weight": rng.standard_normal((c["vocab_size"], h)).astype(np.float32),
               "model.norm.weight": np.ones(h, np.float32),
               "lm_head.weight": dense(c["vocab_size"], h) * 4.0}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors.update({
            p + "input_layernorm.weight": np.ones(h, np.float32),
            p + "post_attention_layernorm.weight": np.ones(h, np.float32),
            p + "self_attn.q_proj.weight": dense(q, h), p + "self_attn.k_proj.weight": dense(kv, h),
            p + "self_attn.v_proj.weight": dense(kv, h), p + "self_attn.o_proj.weight": dense(h, q),
            p + "mlp.gate_proj.weight": dense(inter, h), p + "mlp.up_proj.weight": dense(inter, h),
            p + "mlp.down_proj.weight": dense(h, inter),
        })
    save_file(tensors, os.path.join(out_dir, "model.safetensors"))


def demo_model_dir() -> str:
    """The demo model's folder, built on first use."""
    root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "octavo",
                        "demo-random-llama-v1")
    if not os.path.exists(os.path.join(root, "model.safetensors")):
        os.makedirs(root, exist_ok=True)
        _train_tokenizer(root, DEMO_CONFIG["vocab_size"])
        with open(os.path.join(root, "config.json"), "w") as f:
            json.dump(DEMO_CONFIG, f, indent=2)
        _write_weights(root, DEMO_CONFIG)
    return root


def run_demo(model: str | None = None, max_tokens: int = 48) -> None:
    from octavo import LLM, SamplingParams

    model = model or demo_model_dir()
    llm = LLM(model=model, max_num_seqs=16)
    prompts = ["Return a new list", "The default value of the", "Raise an exception if", "This module provides"]
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=max_tokens, seed=0)
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    for out in outputs:
        print(f"{out.prompt!r} -> {out.outputs[0].text!r}")
    n = sum(len(o.outputs[0].token_ids) for o in outputs)
    print(f"{len(outputs)} requests, {n} tokens in {elapsed:.2f} s: {n / elapsed:.1f} output tokens/s")
