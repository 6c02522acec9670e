"""`python -m octavo` / `octavo demo`: generate with the small model shipped in the package.

The model in `octavo/demo_model/` is a 5.8M-parameter Llama trained from scratch, with its
own byte-level BPE tokenizer, on the docstrings of Python's standard library by
`tools/train_demo_model.py` (its README.md records how). It writes docstring-flavoured
English about Python and nothing else; the point is the real engine end to end on any
machine, with no download and no PyTorch.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"

DEMO_PROMPTS = (
    "Return a new list",
    "The default value of the",
    "Raise an exception if",
    "This module provides",
    "If the file does not exist,",
    "Create a new dictionary",
)


def demo_model_dir() -> str:
    """The folder of the demo model shipped inside the package (an HF checkpoint)."""
    if not (DEMO_MODEL_DIR / "model.safetensors").is_file():
        raise OSError(f"the demo model is missing from {DEMO_MODEL_DIR}: reinstall octavo, or "
                      "recreate it with `python tools/train_demo_model.py`")
    return str(DEMO_MODEL_DIR)


def run_demo(model: str | None = None, max_tokens: int = 48) -> None:
    """Generates a completion for each demo prompt and prints them with the throughput.

    Sampling follows the model's generation_config.json (vLLM's default), seeded, so a
    run prints the same text every time.
    """
    from octavo import LLM

    model = model or demo_model_dir()
    # One thread: this model's matrices are too small for a thread pool to pay, and on a busy
    # machine OpenMP's waiting threads cost more than they give (a loaded 2-core box: 308
    # output tokens/s on one thread, 32 on two).
    llm = LLM(model=model, max_num_seqs=16, num_threads=1 if model == demo_model_dir() else 0)
    params = dataclasses.replace(llm.get_default_sampling_params(), max_tokens=max_tokens, seed=0)
    start = time.perf_counter()
    outputs = llm.generate(list(DEMO_PROMPTS), params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    for out in outputs:
        print(f"{out.prompt!r} -> {out.outputs[0].text!r}")
    n = sum(len(o.outputs[0].token_ids) for o in outputs)
    print(f"{len(outputs)} requests, {n} tokens in {elapsed:.2f} s: {n / elapsed:.1f} output tokens/s "
          f"({llm._info.device}; sampling: temperature={params.temperature}, top_p={params.top_p}, "
          f"repetition_penalty={params.repetition_penalty}, seed={params.seed})")
