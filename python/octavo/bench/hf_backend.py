"""HF transformers as a benchmark peer: static batches, greedy, a fixed number of new tokens.

torch is an optional dependency of octavo; it is imported only when an `HFRunner` is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# --dtype names as LLM takes them; "auto" runs HF in float32, the reference precision.
_TORCH_DTYPES = {"auto": "float32", "float32": "float32", "float": "float32", "bfloat16": "bfloat16",
                 "float16": "float16", "half": "float16"}


def _import_torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"the hf backend needs PyTorch and transformers ({e}); install them with "
            "`pip install torch transformers`, or use --backend octavo") from e
    return torch


class HFRunner:
    """A causal LM loaded with AutoModelForCausalLM, generating from token-id prompts.

    model: a local HF folder or hub id (resolved as LLM resolves it).
    dtype: LLM's dtype names; "auto" means float32.
    device: "cpu", "cuda" or "auto" (cuda when torch sees one).
    pad_token_id: the id left padding uses; None: the model's EOS (the first, if several), else 0.
    load_format: "auto" loads the checkpoint; "dummy" builds the model from config.json alone,
        made directly on the device with transformers' own random initialisation (the same
        shapes and FLOPs as the checkpoint, so timings compare with octavo's dummy load).
    Raises ImportError when torch or transformers is missing, ValueError for an unknown dtype,
    device or load_format, OSError when the model cannot be loaded.
    """

    def __init__(self, model: str, *, dtype: str = "auto", device: str = "auto",
                 pad_token_id: int | None = None, revision: str | None = None,
                 trust_remote_code: bool = False, load_format: str = "auto") -> None:
        torch = _import_torch()
        from transformers import AutoModelForCausalLM

        from octavo.hf import resolve_model_path

        dtype = str(dtype).replace("torch.", "")
        if dtype not in _TORCH_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_TORCH_DTYPES)}, got {dtype!r}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        if load_format not in ("auto", "safetensors", "dummy"):
            raise ValueError(f"load_format must be 'auto', 'safetensors' or 'dummy', got {load_format!r}")
        self._torch = torch
        self.device = device
        self.dtype = _TORCH_DTYPES[dtype]
        torch_dtype = getattr(torch, self.dtype)
        model_dir = resolve_model_path(model, revision=revision, weights=load_format != "dummy")
        if load_format == "dummy":
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
            with torch.device(device):
                self.model = AutoModelForCausalLM.from_config(
                    config, dtype=torch_dtype, trust_remote_code=trust_remote_code).eval()
        else:
            self.model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=torch_dtype, trust_remote_code=trust_remote_code).to(device).eval()
        self.pad_token_id = self._default_pad_id() if pad_token_id is None else pad_token_id

    def _default_pad_id(self) -> int:
        for source in (self.model.generation_config, self.model.config):
            eos: Any = getattr(source, "eos_token_id", None)
            if isinstance(eos, (list, tuple)):
                eos = eos[0] if eos else None
            if isinstance(eos, int):
                return eos
        return 0

    def generate(self, prompts: Sequence[Sequence[int]], output_lens: int | Sequence[int],
                 *, max_batch_size: int = 256) -> list[list[int]]:
        """Greedy continuations of the prompts, one list of new token ids per prompt, in order.

        Prompts go in static batches of up to max_batch_size, left-padded with pad_token_id
        under an attention mask. Each batch generates exactly the largest output length in
        it (min_new_tokens = max_new_tokens, so EOS cannot end a row early); each row's
        result is cut to its own output length. The call returns once the device is done.
        """
        torch = self._torch
        lens = [output_lens] * len(prompts) if isinstance(output_lens, int) else list(output_lens)
        if len(lens) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(lens)} output lengths")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        results: list[list[int]] = []
        for start in range(0, len(prompts), max_batch_size):
            batch = [list(p) for p in prompts[start:start + max_batch_size]]
            batch_lens = lens[start:start + max_batch_size]
            width = max(len(p) for p in batch)
            ids = torch.tensor([[self.pad_token_id] * (width - len(p)) + p for p in batch], dtype=torch.long)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], dtype=torch.long)
            new = max(batch_lens)
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device), do_sample=False,
                    max_new_tokens=new, min_new_tokens=new, pad_token_id=self.pad_token_id)
            generated = out[:, width:].tolist()
            results.extend(row[:n] for row, n in zip(generated, batch_lens))
        return results
