"""LLM constructor arguments: validation and translation into the native EngineConfig.

vLLM's option names and meanings. Options octavo honours are checked here and passed on;
known vLLM options octavo does not do yet raise ValueError rather than being ignored;
unknown keywords raise TypeError, as any Python function would.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("octavo")

_DTYPES = {"auto", "float32", "float", "bfloat16", "float16", "half"}
# "dummy" is vLLM's: random weights of the config's shapes, no weight file read.
LOAD_FORMATS = ("auto", "safetensors", "dummy")

# vLLM options accepted through **kwargs, with their defaults. Each is honoured, or its
# non-default values are refused in check_unsupported below.
_KWARG_DEFAULTS: dict[str, Any] = {
    "enable_chunked_prefill": None,
    "max_logprobs": 20,
    "disable_log_stats": True,
    "scheduling_policy": "fcfs",
    "load_format": "auto",
    "enable_prefix_caching": None,
    "pipeline_parallel_size": 1,
    "data_parallel_size": 1,
    "cpu_offload_gb": 0,
    "disable_custom_all_reduce": False,
    "generation_config": "auto",
    "override_generation_config": None,
    "swap_space": None,
    "max_seq_len_to_capture": None,
    "compilation_config": None,
    "num_threads": 0,
    # vLLM needs it for LLM.sleep(); octavo can always sleep, so either value is accepted.
    "enable_sleep_mode": False,
}


@dataclass
class EngineArgs:
    model: str
    tokenizer: str | None = None
    tokenizer_mode: str = "auto"
    skip_tokenizer_init: bool = False
    trust_remote_code: bool = False
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    quantization: str | None = None
    revision: str | None = None
    tokenizer_revision: str | None = None
    seed: int = 0
    gpu_memory_utilization: float = 0.9
    kv_cache_memory_bytes: int | None = None
    max_model_len: int | None = None
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    block_size: int = 16
    enforce_eager: bool = False
    hf_token: bool | str | None = None
    hf_overrides: Any = None
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_llm_kwargs(cls, model: str, kwargs: dict[str, Any], **named: Any) -> EngineArgs:
        unknown = sorted(set(kwargs) - set(_KWARG_DEFAULTS))
        if unknown:
            raise TypeError(f"LLM.__init__() got an unexpected keyword argument {unknown[0]!r}")
        extra = dict(_KWARG_DEFAULTS)
        extra.update(kwargs)
        args = cls(model=model, extra=extra, **named)
        args.validate()
        return args

    def option(self, name: str) -> Any:
        return self.extra[name]

    def validate(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise TypeError(f"model must be a non-empty string, got {self.model!r}")
        dtype = str(self.dtype).replace("torch.", "")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        self.dtype = dtype
        if self.tokenizer_mode not in ("auto", "slow", "hf"):
            raise ValueError(
                f"tokenizer_mode {self.tokenizer_mode!r} is not supported by octavo; use 'auto', 'hf' or 'slow'")
        if self.tensor_parallel_size != 1:
            raise ValueError(
                f"tensor_parallel_size={self.tensor_parallel_size} is not supported yet: octavo runs on one device")
        if self.quantization is not None:
            raise ValueError(f"quantization={self.quantization!r} is not supported yet by octavo")
        if not 0.0 < float(self.gpu_memory_utilization) <= 1.0:
            raise ValueError(
                f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        for name in ("max_num_seqs", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_model_len", "max_num_batched_tokens", "kv_cache_memory_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        self._check_kwargs()

    def _check_kwargs(self) -> None:
        x = self.extra
        if x["swap_space"] is not None:
            warnings.warn("swap_space is deprecated and has no effect: preempted requests are recomputed",
                          DeprecationWarning, stacklevel=4)
        refuse = {
            "scheduling_policy": ("fcfs", "priority"),
            "load_format": LOAD_FORMATS,
            "pipeline_parallel_size": (1,),
            "data_parallel_size": (1,),
            "cpu_offload_gb": (0,),
            "compilation_config": (None,),
        }
        for name, allowed in refuse.items():
            if x[name] not in allowed:
                raise ValueError(f"{name}={x[name]!r} is not supported yet by octavo (accepted: {list(allowed)})")
        if x["enable_prefix_caching"] is not None and not isinstance(x["enable_prefix_caching"], bool):
            raise ValueError(f"enable_prefix_caching must be True, False or None, got {x['enable_prefix_caching']!r}")
        if not isinstance(x["max_logprobs"], int) or x["max_logprobs"] < 0:
            raise ValueError(f"max_logprobs must be a non-negative integer, got {x['max_logprobs']!r}")
        if not isinstance(x["generation_config"], (str, os.PathLike)) or not x["generation_config"]:
            raise ValueError(f"generation_config must be 'auto', 'vllm' or a folder, got {x['generation_config']!r}")
        x["generation_config"] = os.fspath(x["generation_config"])
        if x["override_generation_config"] is not None and not isinstance(x["override_generation_config"], dict):
            raise TypeError("override_generation_config must be a dict of generation_config.json values, got "
                            f"{type(x['override_generation_config']).__name__}")

    def resolved_device(self, native) -> str:
        if self.device != "auto":
            return self.device
        return "cuda" if native.cuda_available() else "cpu"

    def to_engine_config(self, native, model_dir: str, config_json: str, eos_token_ids: list[int]):
        cfg = native.EngineConfig()
        cfg.model_dir = model_dir
        cfg.config_json = config_json
        cfg.load_format = self.option("load_format")
        cfg.device = self.resolved_device(native)
        cfg.dtype = self.dtype
        cfg.gpu_memory_utilization = float(self.gpu_memory_utilization)
        if cfg.device == "cpu" and self.dtype in ("bfloat16", "float16", "half"):
            logger.warning("dtype=%s: the CPU backend computes in float32 (weights are converted at load)",
                           self.dtype)
        cfg.max_model_len = self.max_model_len or 0
        cfg.max_num_seqs = self.max_num_seqs
        cfg.max_num_batched_tokens = self.max_num_batched_tokens or 0
        cfg.block_size = self.block_size
        cfg.kv_cache_memory_bytes = self.kv_cache_memory_bytes or 0
        chunked = self.option("enable_chunked_prefill")
        cfg.enable_chunked_prefill = True if chunked is None else bool(chunked)
        cfg.enforce_eager = bool(self.enforce_eager)
        cfg.scheduling_policy = self.option("scheduling_policy")
        # vLLM v1: on unless turned off.
        prefix = self.option("enable_prefix_caching")
        cfg.enable_prefix_caching = True if prefix is None else prefix
        cfg.max_logprobs = self.option("max_logprobs")
        cfg.seed = self.seed & 0xFFFFFFFFFFFFFFFF
        cfg.num_threads = int(self.option("num_threads"))
        cfg.eos_token_ids = eos_token_ids
        return cfg
