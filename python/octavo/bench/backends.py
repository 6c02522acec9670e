"""The engines a benchmark can time: octavo's LLM, or HF transformers (`hf_backend`).

Each backend turns a list of `SampleRequest`s into a zero-argument callable that runs them
all once and returns how many tokens it generated per request; the benchmarks time only
that call, so tokenization, loading and setting up prompts stay outside the clock.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from octavo.bench.datasets import SampleRequest

BACKENDS = ("octavo", "hf")
DTYPES = ("auto", "float32", "float", "bfloat16", "float16", "half")
# HF's static batch when --max-num-seqs is not given (LLM's max_num_seqs default too).
DEFAULT_MAX_NUM_SEQS = 256

Run = Callable[[], list[int]]


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """The options both benchmarks share: the model, engine sizes and the backend."""
    parser.add_argument("--model", required=True, help="an HF model folder or hub id")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder or hub id (default: the model's)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="weights and activations; auto: the checkpoint's for octavo, float32 for hf")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--max-num-seqs", type=int, default=None,
                        help=f"octavo's running batch; hf's static batch size (default {DEFAULT_MAX_NUM_SEQS})")
    parser.add_argument("--max-num-batched-tokens", type=int, default=None)
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--load-format", default="auto", choices=("auto", "safetensors", "dummy"),
                        help="passed to LLM(load_format=...); dummy: random weights, the model folder "
                             "needs only config.json and the tokenizer (hf: built from the config "
                             "with transformers' random initialisation)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0, help="seeds the prompts and the engine")
    parser.add_argument("--disable-detokenize", action="store_true",
                        help="octavo: skip detokenizing outputs (they are never printed)")
    parser.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True,
                        help="octavo: automatic prefix caching (vLLM's default: on)")
    parser.add_argument("--backend", default="octavo", choices=BACKENDS)
    parser.add_argument("--output-json", default=None, help="write the results to this JSON file")


class OctavoBackend:
    """octavo's LLM built from the command line's engine options.

    Requests run as vLLM's benchmarks run them: temperature 1.0, top_p 1.0, ignore_eos, so
    each generates exactly its expected_output_len tokens. Raises what LLM() raises
    (ValueError for refused options, OSError for a missing model).
    """

    name = "octavo"

    def __init__(self, args: argparse.Namespace) -> None:
        from octavo import LLM

        kwargs: dict[str, Any] = {}
        if args.max_num_seqs is not None:
            kwargs["max_num_seqs"] = args.max_num_seqs
        start = time.perf_counter()
        self.llm = LLM(args.model, tokenizer=args.tokenizer, dtype=args.dtype, seed=args.seed,
                       max_model_len=args.max_model_len, max_num_batched_tokens=args.max_num_batched_tokens,
                       enforce_eager=args.enforce_eager, device=args.device, load_format=args.load_format,
                       enable_prefix_caching=args.enable_prefix_caching,
                       **kwargs)
        # Weights loaded, KV cache planned, decode graphs recorded: the start-up figure.
        self.startup_time = time.perf_counter() - start
        print(f"Start-up: {self.startup_time:.2f} s")
        self.detokenize = not args.disable_detokenize
        self.tokenizer = self.llm.get_tokenizer()

    def prepare(self, requests: list[SampleRequest], *, use_tqdm: bool = False) -> Run:
        """A callable running every request in one LLM.generate call (one SamplingParams per length)."""
        from octavo import SamplingParams

        by_len: dict[int, SamplingParams] = {}
        params = []
        for r in requests:
            if r.expected_output_len not in by_len:
                by_len[r.expected_output_len] = SamplingParams(
                    n=1, temperature=1.0, top_p=1.0, ignore_eos=True, max_tokens=r.expected_output_len,
                    detokenize=self.detokenize)
            params.append(by_len[r.expected_output_len])
        prompts = [{"prompt_token_ids": r.prompt_token_ids} for r in requests]
        llm = self.llm

        def run() -> list[int]:
            outputs = llm.generate(prompts, params, use_tqdm=use_tqdm)
            return [len(o.outputs[0].token_ids) for o in outputs]

        return run


class HFBackend:
    """HF transformers (`HFRunner`): greedy, static batches of --max-num-seqs, left-padded.

    Raises ImportError without torch. --load-format dummy builds HF's model from config.json
    with transformers' random initialisation, on the device.
    """

    name = "hf"

    def __init__(self, args: argparse.Namespace) -> None:
        from transformers import AutoTokenizer

        from octavo.bench.hf_backend import HFRunner
        from octavo.hf import resolve_model_path

        self.runner = HFRunner(args.model, dtype=args.dtype, device=args.device, load_format=args.load_format)
        self.batch_size = args.max_num_seqs or DEFAULT_MAX_NUM_SEQS
        source = args.tokenizer or resolve_model_path(args.model, weights=args.load_format != "dummy")
        self.tokenizer = AutoTokenizer.from_pretrained(source)

    def prepare(self, requests: list[SampleRequest], *, use_tqdm: bool = False) -> Run:
        """A callable generating every request's expected_output_len tokens (see HFRunner.generate)."""
        prompts = [r.prompt_token_ids for r in requests]
        lens = [r.expected_output_len for r in requests]
        runner, batch_size = self.runner, self.batch_size

        def run() -> list[int]:
            return [len(t) for t in runner.generate(prompts, lens, max_batch_size=batch_size)]

        return run


def make_backend(args: argparse.Namespace) -> OctavoBackend | HFBackend:
    """The backend --backend names, built from the parsed options."""
    return OctavoBackend(args) if args.backend == "octavo" else HFBackend(args)


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    """The model's config.json as a dict."""
    from octavo.hf import load_hf_config, resolve_model_path

    return load_hf_config(resolve_model_path(args.model, weights=args.load_format != "dummy"))


def args_for_json(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options, without the dispatch function argparse carries."""
    return {k: v for k, v in vars(args).items() if not callable(v)}
