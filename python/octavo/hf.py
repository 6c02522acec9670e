"""Finding a model on disk: local directories, or Hugging Face Hub ids through its cache.

`resolve_model_path` turns the `model` (or `tokenizer`) argument of `LLM` into a local
directory; `load_hf_config` and `load_generation_config` read the JSON files in it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

# What octavo reads from a repository: configs, safetensors weights and index, tokenizer
# files (tokenizer.json, sentencepiece .model, tiktoken, vocab/merges .txt) and chat
# templates. PyTorch .bin weights and remote code are not fetched.
ALLOW_PATTERNS: tuple[str, ...] = (
    "*.json",
    "*.safetensors",
    "*.model",
    "*.txt",
    "*.tiktoken",
    "*.jinja",
)

_TRUE_VALUES = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set, in the environment now or when huggingface_hub loaded."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE_VALUES:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _looks_like_local_path(model: str) -> bool:
    """Whether `model` names a file system path rather than a Hub id ("org/name").

    True for absolute paths, ./ ../ ~ prefixes, backslashes, more than one "/" (a Hub id
    has at most one), and for paths whose first component exists here (models/foo, say,
    when ./models is a directory).
    """
    if model.startswith(("/", "./", "../", "~", ".\\", "..\\")) or model in (".", ".."):
        return True
    if "\\" in model or model.count("/") > 1:
        return True
    first = model.split("/", 1)[0]
    return "/" in model and os.path.isdir(first)


def _hub_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a Hub look-up raises for a missing repo, revision, file or network."""
    errors: list[type[BaseException]] = [OSError, ValueError]
    try:
        from huggingface_hub import errors as hub_errors
    except ImportError:
        hub_errors = None
    if hub_errors is not None:
        for value in vars(hub_errors).values():
            if isinstance(value, type) and issubclass(value, Exception):
                errors.append(value)
    for http_module in ("httpx2", "httpx", "requests"):
        try:
            module = __import__(http_module)
        except ImportError:
            continue
        for attr in ("HTTPError", "TransportError", "RequestException"):
            value = getattr(module, attr, None)
            if isinstance(value, type) and issubclass(value, Exception):
                errors.append(value)
    return tuple(errors)


def resolve_model_path(
    model: str | os.PathLike,
    *,
    revision: str | None = None,
    hf_token: bool | str | None = None,
    cache_dir: str | os.PathLike | None = None,
    weights: bool = True,
) -> str:
    """Returns a local directory holding `model`'s files.

    - An existing directory is returned as given (with ~ expanded).
    - An existing path that is not a directory raises NotADirectoryError (an OSError).
    - A missing path that looks local (see `_looks_like_local_path`) raises FileNotFoundError
      naming it.
    - Anything else is a Hub id: huggingface_hub.snapshot_download fetches `ALLOW_PATTERNS`
      (without *.safetensors when `weights` is False: load_format="dummy" reads none)
      at `revision` (None: "main") into `cache_dir` (None: the Hub's cache, HF_HUB_CACHE),
      using `hf_token`. With HF_HUB_OFFLINE set, only the cache is consulted.
      Any failure (unknown repo or revision, gated repo, not cached while offline, network
      down) raises OSError naming the id and the revision and saying whether offline mode
      was on; the Hub's exception is chained as __cause__.
    """
    model = os.fspath(model)
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty path or Hub id, got {model!r}")
    local = os.path.expanduser(model)
    if os.path.isdir(local):
        return local
    if os.path.exists(local):
        raise NotADirectoryError(
            f"model path {model!r} exists but is not a directory; pass the directory that "
            "holds config.json and the weights"
        )
    if _looks_like_local_path(model):
        raise FileNotFoundError(f"model directory {model!r} does not exist")

    from huggingface_hub import snapshot_download

    offline = hub_offline()
    try:
        path = snapshot_download(
            model,
            revision=revision,
            token=hf_token,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            allow_patterns=[p for p in ALLOW_PATTERNS if weights or p != "*.safetensors"],
            local_files_only=offline,
        )
    except _hub_errors() as err:
        where = "the local Hugging Face cache" + (f" ({os.fspath(cache_dir)})" if cache_dir else "")
        mode = (
            f"offline mode is ON (HF_HUB_OFFLINE), so only {where} was searched"
            if offline
            else "offline mode is off"
        )
        raise OSError(
            f"cannot resolve model {model!r} at revision {revision or 'main'!r}: it is not a "
            f"local directory, and the Hugging Face Hub look-up failed; {mode}. "
            f"{type(err).__name__}: {err}"
        ) from err
    return str(path)


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def load_hf_config(
    model_dir: str | os.PathLike,
    hf_overrides: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Reads model_dir/config.json and applies `hf_overrides`.

    hf_overrides: a dict updates the top-level keys (a shallow update: a nested dict such as
    rope_scaling is replaced whole); a callable receives the config dict and returns the
    new one.
    Raises FileNotFoundError (an OSError) naming config.json if it is missing, ValueError if
    it is not a JSON object, TypeError if hf_overrides is neither dict nor callable or the
    callable returns something other than a dict.
    """
    config = _read_json_object(Path(model_dir) / "config.json")
    if hf_overrides is None:
        return config
    if isinstance(hf_overrides, dict):
        config.update(hf_overrides)
        return config
    if callable(hf_overrides):
        result = hf_overrides(config)
        if not isinstance(result, dict):
            raise TypeError(
                f"hf_overrides callable must return the config dict, got {type(result).__name__}"
            )
        return result
    raise TypeError(
        f"hf_overrides must be a dict, a callable or None, got {type(hf_overrides).__name__}"
    )


def load_generation_config(model_dir: str | os.PathLike, *, required: bool = False) -> dict[str, Any]:
    """Reads model_dir/generation_config.json; {} if there is none.

    required: the folder was named by the user (generation_config=<folder>), so a folder
    that does not exist raises FileNotFoundError (an OSError) naming it.
    Raises ValueError if the file exists but is not a JSON object.
    """
    if required and not os.path.isdir(model_dir):
        raise FileNotFoundError(
            f"generation_config={os.fspath(model_dir)!r} is not a folder: pass 'auto', 'vllm' or a folder "
            "holding generation_config.json")
    path = Path(model_dir) / "generation_config.json"
    if not path.is_file():
        return {}
    return _read_json_object(path)


# generation_config.json keys vLLM takes sampling defaults from, and their SamplingParams names.
_SAMPLING_DEFAULT_KEYS = {
    "repetition_penalty": "repetition_penalty",
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "max_new_tokens": "max_tokens",
}


def default_sampling_values(generation_config: dict[str, Any],
                            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The SamplingParams defaults a generation config gives, as vLLM's get_diff_sampling_param.

    Only values that differ from transformers' GenerationConfig defaults count (vLLM reads
    the file through GenerationConfig.to_diff_dict); `overrides` (override_generation_config)
    then update them. Returns {SamplingParams name: value} for the keys that are set.
    """
    config = dict(generation_config)
    if config:
        try:
            from transformers import GenerationConfig
        except ImportError:
            hf_defaults: dict[str, Any] = {}
        else:
            hf_defaults = GenerationConfig().to_dict()
        config = {k: v for k, v in config.items() if k not in hf_defaults or hf_defaults[k] != v}
    config.update(overrides or {})
    return {ours: config[theirs] for theirs, ours in _SAMPLING_DEFAULT_KEYS.items()
            if config.get(theirs) is not None}
