"""Tiny checkpoints built offline, and HF transformers references computed on them.

Everything here runs on a laptop CPU in about a second per model, needs no network and is
deterministic for a given (Python, tokenizers, transformers, torch) install:

- `train_tiny_tokenizer` trains a byte-level BPE tokenizer on the docstrings of a fixed list
  of standard-library modules (text every Python has), with a chat template.
- `make_tiny_model` writes a randomly initialised llama / llama3 / mistral / qwen2 / qwen3
  checkpoint in the HF layout (config.json, safetensors, tokenizer files). The weights are
  "peaky": the top two logits are far enough apart that greedy decoding has no near-ties,
  so a test comparing octavo with HF fails only for a real fault.
- `hf_greedy` and `hf_logprobs` are the reference: HF transformers, eager attention, one
  prompt at a time with no padding, the whole sequence recomputed at every step.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import random
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Ids 0..3, in this order, so that bos=1 and eos=2 as in Llama's own tokenizer.
SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<s>", "</s>", "<pad>")
UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN = SPECIAL_TOKENS

# One turn is "<|role|>\n{content}</s>\n"; the prompt opens with <s>. The template adds the
# BOS itself, so a rendered chat is tokenized with add_special_tokens=False (as HF and vLLM do).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

# Modules whose docstrings make the tokenizer's training text. Fixed and sorted, so the
# corpus (and the tokenizer) depends only on the Python version.
_CORPUS_MODULES: tuple[str, ...] = (
    "abc", "argparse", "bisect", "calendar", "collections", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools",
    "heapq", "io", "itertools", "json", "logging", "math", "os", "pathlib", "pprint",
    "queue", "random", "re", "shutil", "statistics", "string", "subprocess", "textwrap",
    "threading", "typing", "unittest",
)

ARCHITECTURES: tuple[str, ...] = ("llama", "llama3", "mistral", "qwen2", "qwen3")

# Mistral's window is shorter than the longer test prompts, so the window changes outputs.
MISTRAL_SLIDING_WINDOW = 24
# Llama 3.1 rope scaling shrunk to these sizes: with head_dim 16 and theta 5e5 the rotary
# frequencies fall in all three bands (kept, smoothed, divided by `factor`).
LLAMA3_ROPE_PARAMETERS: dict[str, Any] = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
# Qwen3 models set head_dim independently of hidden_size / num_heads; so does the tiny one.
QWEN3_HEAD_DIM = 32

# Weights are drawn per role with fan-in scaling, so activations stay O(1) at any size:
# a matrix with fan-in f is N(0, (gain / sqrt(f))^2). (HF's initializer, one std for every
# matrix, either gives flat logits (std 0.02) or, when raised for peakier logits, saturates
# attention into a hard argmax that hides softmax-scale faults.)
# - q_proj and k_proj: gain 1.5, so pre-softmax attention scores spread by about 1.5^2.
# - every other projection: gain 1.
# - lm_head and the embedding (which may be tied to it): gain `DEFAULT_LOGIT_GAIN` over
#   sqrt(hidden_size). The final hidden state has RMS about 1, so the logits spread by
#   about the gain: peaky enough that the top-1/top-2 gap is well above float error at
#   nearly every step (tests/python/test_tiny_models.py measures it), not so peaky that
#   sampling at temperature 1 is greedy.
_QK_GAIN = 1.5
DEFAULT_LOGIT_GAIN = 6.0
# Norm weights are drawn from U(1 - j, 1 + j) and biases from N(0, bias_std^2) rather than
# HF's ones and zeros, so an engine that skips a norm weight or a bias gives wrong tokens.
_NORM_WEIGHT_JITTER = 0.25
_BIAS_STD = 0.5

_DTYPES = ("float32", "bfloat16", "float16")


# ---- tokenizer ------------------------------------------------------------------------


def training_corpus() -> list[str]:
    """The tokenizer's training text: docstrings of `_CORPUS_MODULES`, in a fixed order."""
    texts: list[str] = []
    with warnings.catch_warnings():  # e.g. typing.io's deprecation, on touching it
        warnings.simplefilter("ignore")
        for module_name in _CORPUS_MODULES:
            module = importlib.import_module(module_name)
            doc = inspect.getdoc(module)
            if doc:
                texts.append(doc)
            for name, obj in sorted(vars(module).items()):
                if name.startswith("_"):
                    continue
                if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
                    doc = inspect.getdoc(obj)
                    if doc:
                        texts.append(doc)
    return texts


def train_tiny_tokenizer(out_dir: str | os.PathLike, vocab_size: int = 384) -> str:
    """Trains a byte-level BPE tokenizer offline and saves it in the HF layout.

    The vocabulary is the 4 special tokens (<unk>=0, <s>=1, </s>=2, <pad>=3), the 256 byte
    symbols and `vocab_size - 260` merges. Encoding adds <s> in front (as Llama does); any
    text round-trips through encode/decode. The saved tokenizer carries `CHAT_TEMPLATE`.

    Returns `out_dir` as a string. Raises ValueError if vocab_size < 260.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    min_vocab = len(SPECIAL_TOKENS) + 256
    if vocab_size < min_vocab:
        raise ValueError(f"vocab_size must be >= {min_vocab} (specials + bytes), got {vocab_size}")

    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus(), trainer=trainer)
    bos_id = tokenizer.token_to_id(BOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )
    out_dir = str(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    fast.save_pretrained(out_dir)
    return out_dir


# ---- model ----------------------------------------------------------------------------


def _config_class(arch: str):
    import transformers

    names = {
        "llama": "LlamaConfig",
        "llama3": "LlamaConfig",
        "mistral": "MistralConfig",
        "qwen2": "Qwen2Config",
        "qwen3": "Qwen3Config",
    }
    return getattr(transformers, names[arch])


def _arch_config_kwargs(arch: str) -> dict[str, Any]:
    """What each architecture sets beyond the shared sizes."""
    if arch == "llama":
        return {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
    if arch == "llama3":
        return {"rope_parameters": dict(LLAMA3_ROPE_PARAMETERS)}
    if arch == "mistral":
        return {
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "sliding_window": MISTRAL_SLIDING_WINDOW,
        }
    if arch == "qwen2":  # q/k/v projections carry biases (always, in Qwen2)
        return {
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
            "use_sliding_window": False,
        }
    if arch == "qwen3":  # q/k RMSNorm per head; head_dim set explicitly
        return {
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
            "use_sliding_window": False,
            "attention_bias": False,
        }
    raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")


def _randomize_parameters(model, seed: int, logit_gain: float) -> None:
    """Draws every parameter from a generator seeded with `seed`, in name order.

    See the comment on `_QK_GAIN` for the scheme. Tied weights are drawn once.
    """
    import torch

    hidden_size = model.config.hidden_size
    generator = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(remove_duplicate=False)):
            if id(param) in seen:
                continue
            seen.add(id(param))
            shape = param.shape
            if name.endswith("norm.weight"):
                values = torch.rand(shape, generator=generator, dtype=torch.float32)
                values = 1.0 + _NORM_WEIGHT_JITTER * (2.0 * values - 1.0)
            elif name.endswith(".bias"):
                values = _BIAS_STD * torch.randn(shape, generator=generator)
            elif "embed_tokens" in name or "lm_head" in name:
                values = (logit_gain / hidden_size**0.5) * torch.randn(shape, generator=generator)
            elif len(shape) == 2:
                gain = _QK_GAIN if ("q_proj" in name or "k_proj" in name) else 1.0
                values = (gain / shape[1] ** 0.5) * torch.randn(shape, generator=generator)
            else:
                raise ValueError(f"no initialisation rule for parameter {name} {tuple(shape)}")
            param.copy_(values.to(param.dtype))


def _is_model_file(name: str) -> bool:
    return name in ("config.json", "generation_config.json") or ".safetensors" in name


def _tokenizer_special_ids(tokenizer_dir: str) -> tuple[int, dict[str, int | None]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return len(tokenizer), ids


def _to_legacy_rope_config(config_path: Path) -> None:
    """Rewrites transformers-5 `rope_parameters` as the older `rope_theta` + `rope_scaling`.

    Most checkpoints on the Hub use the older keys; transformers reads both.
    """
    config = json.loads(config_path.read_text())
    rope = config.pop("rope_parameters", None)
    if rope is None:
        return
    rope = dict(rope)
    config["rope_theta"] = rope.pop("rope_theta")
    if rope.get("rope_type", "default") != "default":
        config["rope_scaling"] = rope
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def make_tiny_model(
    out_dir: str | os.PathLike,
    arch: str = "llama",
    *,
    tokenizer_dir: str | os.PathLike | None = None,
    vocab_size: int | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    head_dim: int | None = None,
    max_position_embeddings: int = 256,
    dtype: str = "float32",
    seed: int = 0,
    logit_gain: float = DEFAULT_LOGIT_GAIN,
    tie_word_embeddings: bool = False,
    shard_size: int | str | None = None,
    legacy_rope_config: bool = False,
    **config_overrides: Any,
) -> str:
    """Writes a random tiny decoder checkpoint in the HF layout to `out_dir`; returns it.

    arch: "llama"; "llama3" (Llama with llama3 rope scaling, `LLAMA3_ROPE_PARAMETERS`);
    "mistral" (sliding_window `MISTRAL_SLIDING_WINDOW`); "qwen2" (q/k/v biases);
    "qwen3" (q/k norms, head_dim `QWEN3_HEAD_DIM` unless given).
    tokenizer_dir: a tokenizer to copy in (its files other than configs and weights);
        None trains one (`train_tiny_tokenizer`) into out_dir.
    vocab_size: the model's vocabulary, >= the tokenizer's (larger pads it, as real models
        do); None: the tokenizer's size.
    dtype: "float32", "bfloat16" or "float16": the saved weights and config dtype. Weights are
        drawn in float32 and rounded, so one seed gives the same model in every dtype.
    seed: seeds every weight; same arguments and seed, same checkpoint.
    logit_gain: spread of the output logits (see `DEFAULT_LOGIT_GAIN`); lower is flatter.
    shard_size: max_shard_size for save_pretrained (bytes or "100KB"); None: one file.
    legacy_rope_config: write `rope_theta` / `rope_scaling` instead of `rope_parameters`.
    config_overrides: extra config attributes, applied last (e.g. rms_norm_eps=1e-5).

    bos/eos/pad ids in config.json and generation_config.json are the tokenizer's.
    Raises ValueError for an unknown arch or dtype, or a vocab_size below the tokenizer's.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")

    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is None:
        train_tiny_tokenizer(out_path)
    else:
        for entry in sorted(Path(tokenizer_dir).iterdir()):
            if entry.is_file() and not _is_model_file(entry.name):
                shutil.copy2(entry, out_path / entry.name)
    tokenizer_size, special_ids = _tokenizer_special_ids(str(out_path))
    if vocab_size is None:
        vocab_size = tokenizer_size
    elif vocab_size < tokenizer_size:
        raise ValueError(
            f"vocab_size must be >= the tokenizer's {tokenizer_size}, got {vocab_size}"
        )

    if head_dim is None and arch == "qwen3":
        head_dim = QWEN3_HEAD_DIM
    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tie_word_embeddings,
        **special_ids,
    )
    if head_dim is not None:
        kwargs["head_dim"] = head_dim
    kwargs.update(_arch_config_kwargs(arch))
    kwargs.update(config_overrides)
    config = _config_class(arch)(**kwargs)

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _randomize_parameters(model, seed, logit_gain)
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    model.generation_config.bos_token_id = special_ids["bos_token_id"]
    model.generation_config.eos_token_id = special_ids["eos_token_id"]
    model.generation_config.pad_token_id = special_ids["pad_token_id"]

    save_kwargs: dict[str, Any] = {}
    if shard_size is not None:
        save_kwargs["max_shard_size"] = shard_size
    model.save_pretrained(out_path, **save_kwargs)
    if legacy_rope_config:
        _to_legacy_rope_config(out_path / "config.json")
    return str(out_path)


# ---- HF reference ---------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def load_hf_model(model_dir: str, dtype: str = "float32"):
    """The checkpoint in HF transformers, eager attention, eval mode, on CPU.

    dtype: "float32" (the reference; lower-precision checkpoints are upcast), "bfloat16",
    "float16", or "auto" (the checkpoint's). Cached per (model_dir, dtype): do not modify it.
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch_dtype, attn_implementation="eager"
    )
    return model.eval()


@dataclass
class HFReference:
    """HF's greedy continuation of one prompt, with the model's raw log-probabilities.

    logprobs[i] is log_softmax of the raw logits that chose token_ids[i] (no penalties, no
    temperature): shape [len(token_ids), vocab_size]. prompt_logprobs[j] is the distribution
    over prompt token j + 1 given the tokens before it: shape [len(prompt) - 1, vocab_size].
    Both float64.
    """

    prompt_token_ids: list[int]
    token_ids: list[int]
    logprobs: np.ndarray
    prompt_logprobs: np.ndarray


def _log_softmax64(logits) -> np.ndarray:
    import torch

    return torch.log_softmax(logits.to(torch.float64), dim=-1).numpy()


def _eos_set(eos_token_id: int | Sequence[int] | None) -> set[int]:
    if eos_token_id is None:
        return set()
    if isinstance(eos_token_id, int):
        return {eos_token_id}
    return set(eos_token_id)


def hf_logprobs(
    model_dir: str | os.PathLike,
    prompts_token_ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    eos_token_id: int | Sequence[int] | None = None,
    dtype: str = "float32",
) -> list[HFReference]:
    """Greedy decoding in HF transformers, one prompt at a time, with full logprobs.

    Each step recomputes the whole sequence (no KV cache, no padding) and takes the argmax
    of the last position's logits (lowest id on an exact tie, as torch.argmax). Generation
    stops after max_new_tokens, or after emitting an id in eos_token_id (None: never).
    """
    import torch

    model = load_hf_model(str(model_dir), dtype)
    stop_ids = _eos_set(eos_token_id)
    # One torch thread: these models are tiny, and on a busy 2-core machine torch's pool
    # made each forward ~100x slower (measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _hf_logprobs_loop(model, prompts_token_ids, max_new_tokens, stop_ids)
    finally:
        torch.set_num_threads(threads)


def _hf_logprobs_loop(model, prompts_token_ids, max_new_tokens, stop_ids) -> list[HFReference]:
    import torch

    results = []
    with torch.no_grad():
        for prompt in prompts_token_ids:
            prompt = [int(t) for t in prompt]
            if not prompt:
                raise ValueError("prompts must not be empty")
            ids = list(prompt)
            step_logprobs = []
            prompt_logprobs = None
            for _ in range(max_new_tokens):
                logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
                logits = logits.to(torch.float32)
                if prompt_logprobs is None:
                    prompt_logprobs = _log_softmax64(logits[: len(prompt) - 1])
                step_logprobs.append(_log_softmax64(logits[-1]))
                next_id = int(torch.argmax(logits[-1]))
                ids.append(next_id)
                if next_id in stop_ids:
                    break
            if prompt_logprobs is None:  # max_new_tokens == 0
                logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
                prompt_logprobs = _log_softmax64(logits[: len(prompt) - 1].to(torch.float32))
            vocab = prompt_logprobs.shape[-1]
            results.append(
                HFReference(
                    prompt_token_ids=prompt,
                    token_ids=ids[len(prompt):],
                    logprobs=np.stack(step_logprobs) if step_logprobs else np.zeros((0, vocab)),
                    prompt_logprobs=prompt_logprobs,
                )
            )
    return results


def hf_greedy(
    model_dir: str | os.PathLike,
    prompts_token_ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    eos_token_id: int | Sequence[int] | None = None,
    dtype: str = "float32",
) -> list[list[int]]:
    """The generated token ids of `hf_logprobs`, one list per prompt."""
    refs = hf_logprobs(
        model_dir, prompts_token_ids, max_new_tokens, eos_token_id=eos_token_id, dtype=dtype
    )
    return [ref.token_ids for ref in refs]


def top2_margins(logprobs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 along the last axis (log-softmax differences equal logit ones)."""
    top2 = np.sort(logprobs, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def random_prompts(
    num_prompts: int,
    vocab_size: int,
    *,
    min_len: int = 4,
    max_len: int = 32,
    seed: int = 0,
    low: int = len(SPECIAL_TOKENS),
) -> list[list[int]]:
    """`num_prompts` prompts of ids in [low, vocab_size), lengths in [min_len, max_len].

    low defaults past the special tokens, so a prompt never holds a BOS, EOS or pad.
    """
    rng = random.Random(seed)
    return [
        [rng.randrange(low, vocab_size) for _ in range(rng.randint(min_len, max_len))]
        for _ in range(num_prompts)
    ]
