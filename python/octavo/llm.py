"""LLM: vLLM's offline inference class, backed by octavo's native engine."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

from octavo import chat as chat_utils
from octavo._native import _C
from octavo.beam_search import BeamSearchOutput, check_beam_search_params, run_beam_search
from octavo.detokenizer import StopStringChecker, batch_decode
from octavo.engine_args import EngineArgs
from octavo import metrics as metrics_utils
from octavo.hf import default_sampling_values, load_generation_config, load_hf_config, resolve_model_path
from octavo.outputs import CompletionOutput, Logprob, RequestOutput
from octavo.sampling_params import BeamSearchParams, SamplingParams

PromptType = str | dict[str, Any]

_FINISH_REASONS = {
    _C.FinishReason.STOP: "stop",
    _C.FinishReason.LENGTH: "length",
    _C.FinishReason.ABORT: "abort",
}

# SamplingParams features that arrive in later work; refused rather than ignored.
_NOT_YET: dict[str, str] = {}


class LLM:
    """An LLM for generating texts from given prompts and sampling parameters.

    Same constructor and methods as ``vllm.LLM``. ``model`` is a local HF model folder or
    a hub id (resolved through huggingface_hub, honouring HF_HUB_OFFLINE). With
    ``load_format="dummy"`` the weights are random (uniform in [-1e-3, 1e-3], fixed by
    ``seed``) and the folder needs only config.json, plus the tokenizer files unless
    ``skip_tokenizer_init``. Raises OSError when the model cannot be found, ValueError for
    unsupported or invalid settings and TypeError for unknown keyword arguments.
    """

    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        tokenizer_mode: str = "auto",
        skip_tokenizer_init: bool = False,
        trust_remote_code: bool = False,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        quantization: str | None = None,
        revision: str | None = None,
        tokenizer_revision: str | None = None,
        seed: int = 0,
        gpu_memory_utilization: float = 0.9,
        kv_cache_memory_bytes: int | None = None,
        max_model_len: int | None = None,
        max_num_seqs: int = 256,
        max_num_batched_tokens: int | None = None,
        block_size: int = 16,
        enforce_eager: bool = False,
        hf_token: bool | str | None = None,
        hf_overrides: Any = None,
        device: str = "auto",
        **kwargs: Any,
    ) -> None:
        args = EngineArgs.from_llm_kwargs(
            model, kwargs, tokenizer=tokenizer, tokenizer_mode=tokenizer_mode,
            skip_tokenizer_init=skip_tokenizer_init, trust_remote_code=trust_remote_code,
            tensor_parallel_size=tensor_parallel_size, dtype=dtype, quantization=quantization,
            revision=revision, tokenizer_revision=tokenizer_revision, seed=seed,
            gpu_memory_utilization=gpu_memory_utilization, kv_cache_memory_bytes=kv_cache_memory_bytes,
            max_model_len=max_model_len, max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens, block_size=block_size,
            enforce_eager=enforce_eager, hf_token=hf_token, hf_overrides=hf_overrides, device=device)
        self._args = args
        self._model_name = model
        model_dir = resolve_model_path(model, revision=revision, hf_token=hf_token,
                                       weights=args.option("load_format") != "dummy")
        self._model_dir = model_dir
        hf_config = load_hf_config(model_dir, hf_overrides)
        # vLLM reads EOS ids from the generation config whatever the mode; "vllm" drops only
        # its sampling defaults.
        generation_config = args.option("generation_config")
        source = model_dir if generation_config in ("auto", "vllm") else generation_config
        self._generation_config = load_generation_config(source, required=generation_config not in ("auto", "vllm"))
        self._default_sampling = default_sampling_values(
            {} if generation_config == "vllm" else self._generation_config,
            args.option("override_generation_config"))

        self._tokenizer = None if skip_tokenizer_init else self._load_tokenizer(args, model_dir)
        eos = self._eos_token_ids(hf_config)
        engine_config = args.to_engine_config(_C, model_dir, json.dumps(hf_config), eos)
        self._engine = _C.Engine(engine_config)
        self._info = self._engine.info
        self._scheduling_policy = args.option("scheduling_policy")
        self._request_counter = itertools.count()
        # Requests added (by generate or enqueue) whose outputs were not handed back yet, and
        # the native outputs of those that finished, kept until wait_for_completion/generate.
        self._pending: dict[int, tuple[str | None, list[int], SamplingParams]] = {}
        # request id -> {sample index -> native output}; a request is done with all n samples.
        self._finished: dict[int, dict[int, Any]] = {}
        self._collected_tokens = 0  # generated tokens of the samples collected so far
        self._checkers: dict[tuple[int, int], StopStringChecker] = {}  # (id, index) with stop strings
        self.llm_engine = LLMEngine(self)

    # ---- set-up helpers ---------------------------------------------------------------
    @staticmethod
    def _load_tokenizer(args: EngineArgs, model_dir: str):
        from transformers import AutoTokenizer

        source = args.tokenizer or model_dir
        try:
            # Left truncation, as vLLM's generate runner: truncate_prompt_tokens keeps the end.
            return AutoTokenizer.from_pretrained(
                source, revision=args.tokenizer_revision, trust_remote_code=args.trust_remote_code,
                use_fast=args.tokenizer_mode != "slow", token=args.hf_token, truncation_side="left")
        except (OSError, ValueError) as e:
            raise OSError(f"could not load the tokenizer from {source!r}: {e}") from e

    def _eos_token_ids(self, hf_config: dict[str, Any]) -> list[int]:
        ids: list[int] = []
        for source in (self._generation_config.get("eos_token_id"), hf_config.get("eos_token_id"),
                       getattr(self._tokenizer, "eos_token_id", None)):
            for value in source if isinstance(source, list) else [source]:
                if isinstance(value, int) and value not in ids:
                    ids.append(value)
        return ids

    # ---- public API -------------------------------------------------------------------
    def get_tokenizer(self):
        """The HF tokenizer (None with skip_tokenizer_init=True)."""
        return self._tokenizer

    def set_tokenizer(self, tokenizer) -> None:
        self._tokenizer = tokenizer

    def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        """Empties the prefix cache, as vLLM's; returns whether it did.

        False (nothing changed) while requests hold KV blocks, unless reset_running_requests
        preempts them first (they are recomputed later). octavo has no KV connector, so
        reset_connector has nothing to reset.
        """
        return bool(self._engine.reset_prefix_cache(reset_running_requests=bool(reset_running_requests)))

    def get_default_sampling_params(self) -> SamplingParams:
        """The SamplingParams used when none are given, as vLLM.

        generation_config="auto" (the default) or a folder: the temperature, top_p, top_k,
        min_p, repetition_penalty and max_new_tokens (as max_tokens) of its
        generation_config.json that differ from transformers' defaults, over vLLM's own
        defaults; "vllm": vLLM's defaults only. override_generation_config applies last.
        """
        if self._default_sampling:
            return SamplingParams.from_optional(**self._default_sampling)
        return SamplingParams()

    def generate(
        self,
        prompts: PromptType | Sequence[PromptType],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        use_tqdm: bool = True,
        lora_request: Any = None,
        priority: list[int] | None = None,
        tokenization_kwargs: dict[str, Any] | None = None,
    ) -> list[RequestOutput]:
        """Generates completions for the prompts; outputs come back in input order.

        prompts: a str, {"prompt": str}, {"prompt_token_ids": [...]}, or a list of these.
        sampling_params: one SamplingParams for all prompts, or one per prompt.
        priority: one int per prompt, with scheduling_policy="priority": lower values are
        scheduled first (FCFS among equals) and preempted last.
        Raises ValueError (a prompt too long, empty or outside the vocabulary, a list of
        the wrong length, a non-zero priority without the priority policy, an unsupported
        option) before any request runs. Outputs of requests queued earlier with enqueue()
        come back too, as in vLLM, all in request-id order.
        """
        self._add_requests(prompts, sampling_params, lora_request, priority, tokenization_kwargs)
        return self._run_engine(use_tqdm)

    def enqueue(
        self,
        prompts: PromptType | Sequence[PromptType],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        lora_request: Any = None,
        priority: list[int] | None = None,
        use_tqdm: bool = True,
        tokenization_kwargs: dict[str, Any] | None = None,
    ) -> list[str]:
        """Queues prompts without running them; returns their request ids (strings).

        Same arguments and errors as generate(); nothing runs until wait_for_completion()
        (or generate()) steps the engine. A queued request can be cancelled with
        ``llm.llm_engine.abort_request([request_id])``, which frees its KV-cache blocks.
        """
        ids = self._add_requests(prompts, sampling_params, lora_request, priority, tokenization_kwargs,
                                 use_tqdm=use_tqdm)
        return [str(rid) for rid in ids]

    def wait_for_completion(self, *, use_tqdm: bool = True) -> list[RequestOutput]:
        """Runs every queued request to completion; returns their outputs in request-id order
        (aborted requests have none)."""
        return self._run_engine(use_tqdm)

    def chat(
        self,
        messages: list[dict[str, Any]] | list[list[dict[str, Any]]],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        use_tqdm: bool = True,
        lora_request: Any = None,
        chat_template: str | None = None,
        chat_template_content_format: str = "auto",
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        tools: list[dict[str, Any]] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> list[RequestOutput]:
        """Generates replies to one conversation or a list of them, as vLLM's LLM.chat.

        Each conversation (a list of {"role", "content"} dicts; content a str or a list of
        {"type": "text", "text": ...} parts) is rendered with chat_template, or else the
        tokenizer's, tokenized without adding special tokens, and generated from as a token
        prompt (so RequestOutput.prompt is None, as in vLLM). tools and chat_template_kwargs
        reach the template. Raises ValueError with continue_final_message and
        add_generation_prompt both True, without a chat template, for a content part other
        than text, or when the template fails; all before any request runs.
        """
        if lora_request is not None:
            raise ValueError("lora_request is not supported yet by octavo")
        if continue_final_message and add_generation_prompt:
            raise ValueError("continue_final_message=True and add_generation_prompt=True cannot be used "
                             "together: continue the final message, or start a new one")
        if self._tokenizer is None:
            raise ValueError("LLM.chat needs a tokenizer: skip_tokenizer_init=True takes only token prompts")
        conversations = chat_utils.split_conversations(messages)
        template = chat_utils.resolve_chat_template(self._tokenizer, chat_template, tools)
        content_format = chat_utils.resolve_content_format(template, chat_template_content_format)
        prompts: list[PromptType] = []
        for conversation in conversations:
            parsed = chat_utils.parse_conversation(conversation, content_format)
            ids = chat_utils.render_prompt_ids(
                self._tokenizer, parsed, template, add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message, tools=tools,
                chat_template_kwargs=chat_template_kwargs)
            prompts.append({"prompt_token_ids": ids})
        return self.generate(prompts, sampling_params, use_tqdm=use_tqdm)

    # ---- generate() in pieces ---------------------------------------------------------
    def _add_requests(self, prompts: Any, sampling_params: Any, lora_request: Any, priority: Any,
                      tokenization_kwargs: dict[str, Any] | None, use_tqdm: bool = False) -> list[int]:
        """Validates every request, then adds them all to the engine; nothing is added if any is bad."""
        if lora_request is not None:
            raise ValueError("lora_request is not supported yet by octavo")
        prompt_list = self._normalize_prompts(prompts)
        params_list = self._normalize_params(sampling_params, len(prompt_list))
        priorities = self._normalize_priority(priority, len(prompt_list))
        items = zip(prompt_list, params_list)
        if use_tqdm:
            from tqdm.auto import tqdm

            items = tqdm(items, total=len(prompt_list), desc="Adding requests", dynamic_ncols=True)
        requests = [self._prepare(p, sp, tokenization_kwargs) for p, sp in items]
        ids = [next(self._request_counter) for _ in requests]
        added: list[int] = []
        try:
            for rid, (_, prompt_ids, sp), prio in zip(ids, requests, priorities):
                self._engine.add_request(rid, prompt_ids, self._native_params(sp, len(prompt_ids)), prio)
                added.append(rid)
        except BaseException:
            for rid in added:
                self._engine.abort(rid)
            self._drain_aborted()
            raise
        self._pending.update(zip(ids, requests))
        # Only requests with stop strings are detokenized as they run.
        self._checkers.update({(rid, i): self._stop_checker(sp) for rid, (_, _, sp) in zip(ids, requests)
                               if sp.stop for i in range(sp.n)})
        return ids

    def _normalize_priority(self, priority: Any, n: int) -> list[int]:
        if priority is None:
            return [0] * n
        if isinstance(priority, (str, bytes)) or not isinstance(priority, Sequence):
            raise TypeError(f"priority must be a list of ints, got {type(priority).__name__}")
        values = list(priority)
        if len(values) != n:
            raise ValueError(f"The lengths of prompts ({n}) and priority ({len(values)}) must be the same.")
        for value in values:
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"priority values must be ints, got {value!r}")
            if not -(1 << 63) <= value < (1 << 63):
                raise ValueError(f"priority {value} is outside the 64-bit integer range")
            if value != 0 and self._scheduling_policy != "priority":
                raise ValueError(f"Got priority {value} but Priority scheduling is not enabled.")
        return values

    @staticmethod
    def _normalize_prompts(prompts: Any) -> list[PromptType]:
        if isinstance(prompts, (str, dict)):
            prompts = [prompts]
        if not isinstance(prompts, Sequence) or isinstance(prompts, (bytes, bytearray)):
            raise TypeError(f"prompts must be a str, a dict or a list of them, got {type(prompts).__name__}")
        out = list(prompts)
        for p in out:
            if not isinstance(p, (str, dict)):
                raise TypeError(
                    f"each prompt must be a str or a dict with 'prompt' or 'prompt_token_ids', got {p!r:.80}")
        return out

    def _normalize_params(self, sampling_params: Any, n: int) -> list[SamplingParams]:
        if sampling_params is None:
            return [self.get_default_sampling_params()] * n
        if isinstance(sampling_params, SamplingParams):
            return [sampling_params] * n
        params = list(sampling_params)
        if len(params) != n:
            raise ValueError(
                f"The lengths of prompts ({n}) and sampling_params ({len(params)}) must be the same.")
        for sp in params:
            if not isinstance(sp, SamplingParams):
                raise TypeError(f"sampling_params must be SamplingParams, got {type(sp).__name__}")
        return params

    def _prepare(self, prompt: PromptType, sp: SamplingParams,
                 tokenization_kwargs: dict[str, Any] | None) -> tuple[str | None, list[int], SamplingParams]:
        self._check_supported(sp)
        keep = self._truncation_size(sp.truncate_prompt_tokens)
        if keep is not None:
            # Text is truncated by the tokenizer (from the left: special tokens it adds stay),
            # token ids by keeping the last `keep`, as vLLM does.
            tokenization_kwargs = {**(tokenization_kwargs or {}), "truncation": True, "max_length": keep}
        text: str | None
        if isinstance(prompt, str):
            text, ids = prompt, self._encode(prompt, tokenization_kwargs)
        elif "prompt_token_ids" in prompt:
            text = prompt.get("prompt")
            ids = list(prompt["prompt_token_ids"])
            if not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
                raise TypeError("prompt_token_ids must be a list of ints")
            if keep is not None:
                ids = ids[-keep:]
        elif "prompt" in prompt:
            text = prompt["prompt"]
            ids = self._encode(text, tokenization_kwargs)
        else:
            raise ValueError(f"a dict prompt needs 'prompt' or 'prompt_token_ids', got keys {sorted(prompt)}")
        if not ids:
            raise ValueError("The decoder prompt cannot be empty")
        vocab = self._info.vocab_size
        for t in ids:
            if not 0 <= t < vocab:
                raise ValueError(f"Token id {t} is out of vocabulary (vocab_size={vocab})")
        limit = self._info.max_model_len
        if len(ids) > limit:
            raise ValueError(
                f"The decoder prompt (length {len(ids)}) is longer than the maximum model length of {limit}. "
                "Make sure that `max_model_len` is no smaller than the number of text tokens.")
        if sp.logprobs is not None and sp.logprobs > self._args.option("max_logprobs"):
            raise ValueError(
                f"Requested sample logprobs of {sp.logprobs}, which is greater than max allowed: "
                f"{self._args.option('max_logprobs')}")
        return text, ids, self._check_token_options(sp)

    def _check_token_options(self, sp: SamplingParams) -> SamplingParams:
        """vLLM's checks of prompt_logprobs, logit_bias and allowed_token_ids against the
        engine; bad_words are tokenized (into a clone, as vLLM) for the engine."""
        vocab = self._info.vocab_size
        max_logprobs = self._args.option("max_logprobs")
        if sp.prompt_logprobs is not None:
            wanted = vocab if sp.prompt_logprobs == -1 else sp.prompt_logprobs
            if wanted > max_logprobs:
                raise ValueError(
                    f"Requested prompt logprobs of {wanted}, which is greater than max allowed: {max_logprobs}")
        if sp.logit_bias:
            outside = [t for t in sp.logit_bias if not 0 <= t < vocab]
            if outside:
                raise ValueError(f"token_id(s) {outside} in logit_bias contain out-of-vocab token ids. "
                                 f"Vocabulary size: {vocab}")
        if sp.allowed_token_ids is not None:
            if not sp.allowed_token_ids:
                raise ValueError("allowed_token_ids is not None and empty!")
            outside = [t for t in sp.allowed_token_ids if not 0 <= t < vocab]
            if outside:
                raise ValueError(f"allowed_token_ids contains out-of-vocab token id(s) {outside}. "
                                 f"Vocabulary size: {vocab}")
        if sp.bad_words and sp.bad_words_token_ids is None:
            if self._tokenizer is None:
                raise ValueError("bad_words need a tokenizer: not available with skip_tokenizer_init=True")
            sp = sp.clone()
            sp.update_from_tokenizer(self._tokenizer)
        return sp

    def _truncation_size(self, truncate_prompt_tokens: int | None) -> int | None:
        """How many prompt tokens to keep (None: all); -1 means max_model_len, as vLLM."""
        if truncate_prompt_tokens is None:
            return None
        limit = self._info.max_model_len
        keep = limit if truncate_prompt_tokens <= -1 else truncate_prompt_tokens
        if keep > limit:
            raise ValueError(f"truncate_prompt_tokens value ({keep}) is greater than max_model_len ({limit}). "
                             "Please, select a smaller truncation size.")
        return keep

    def _encode(self, text: str, tokenization_kwargs: dict[str, Any] | None) -> list[int]:
        if self._tokenizer is None:
            raise ValueError("text prompts need a tokenizer: skip_tokenizer_init=True accepts only prompt_token_ids")
        return list(self._tokenizer.encode(text, **(tokenization_kwargs or {})))

    def _check_supported(self, sp: SamplingParams) -> None:
        # vLLM v1 has no best_of either: n samples are generated and all n returned.
        if sp.best_of is not None and sp.best_of != sp.n:
            raise ValueError(f"best_of={sp.best_of} (with n={sp.n}) is not supported by octavo: "
                             "leave best_of None or equal to n")
        for name, what in _NOT_YET.items():
            if getattr(sp, name, None):
                raise ValueError(f"{what} ({name}={getattr(sp, name)!r}) are not supported yet by octavo")
        if sp.stop and self._tokenizer is None:
            raise ValueError(f"stop strings (stop={sp.stop!r}) need a tokenizer to find them in the text; "
                             "this LLM has skip_tokenizer_init=True")

    def _native_params(self, sp: SamplingParams, prompt_len: int):
        p = _C.SamplingParams()
        p.n = sp.n
        p.temperature = sp.temperature
        p.top_p = sp.top_p
        p.top_k = 0 if sp.top_k in (None, -1) else sp.top_k
        p.min_p = sp.min_p
        p.presence_penalty = sp.presence_penalty
        p.frequency_penalty = sp.frequency_penalty
        p.repetition_penalty = sp.repetition_penalty
        p.seed = None if sp.seed is None else sp.seed & 0xFFFFFFFFFFFFFFFF
        room = max(1, self._info.max_model_len - prompt_len)
        p.max_tokens = room if sp.max_tokens is None else sp.max_tokens
        p.min_tokens = sp.min_tokens
        p.ignore_eos = sp.ignore_eos
        p.stop_token_ids = list(sp.stop_token_ids or [])
        # Stop strings are found in the text, here: the engine reports these requests' tokens.
        p.report_new_tokens = bool(sp.stop)
        if sp.logprobs is None:
            p.logprobs = -1
        else:
            p.logprobs = self._info.vocab_size if sp.logprobs == -1 else sp.logprobs
        if sp.prompt_logprobs is not None:
            p.prompt_logprobs = self._info.vocab_size if sp.prompt_logprobs == -1 else sp.prompt_logprobs
        p.logit_bias = dict(sp.logit_bias or {})
        p.allowed_token_ids = None if sp.allowed_token_ids is None else list(sp.allowed_token_ids)
        p.bad_words_token_ids = sp.bad_words_token_ids or []
        return p

    def _collect(self, natives) -> int:
        """Keeps the sample outputs of requests still pending; returns how many requests finished
        (all their n samples). Samples with stop strings report each step's tokens (unfinished
        outputs) to their checker, which ends them when a stop string appears."""
        n = 0
        for out in natives:
            checker = self._checkers.get((out.request_id, out.index))
            if checker is not None:
                out = self._check_stop_strings(checker, out)
            if out is None or not out.finished:
                continue
            if out.request_id in self._pending and out.finish_reason != _C.FinishReason.ABORT:
                self._finished.setdefault(out.request_id, {})[out.index] = out
                self._collected_tokens += len(out.token_ids)
                n += self._done(out.request_id)
        return n

    def _done(self, rid: int) -> bool:
        return len(self._finished.get(rid, ())) == self._pending[rid][2].n

    def _run_engine(self, use_tqdm: bool) -> list[RequestOutput]:
        """Steps the engine until every request is done; hands back all pending outputs."""
        todo = [rid for rid in self._pending if not self._done(rid)]
        bar = _progress_bar(len(todo)) if use_tqdm and todo else None
        start = time.perf_counter()
        prompt_tokens = sum(len(self._pending[rid][1]) for rid in todo)
        tokens_before = self._collected_tokens
        try:
            while self._engine.has_unfinished():
                done = self._collect(self._engine.step())
                if bar is not None and done:
                    output_tokens = self._collected_tokens - tokens_before
                    elapsed = max(time.perf_counter() - start, 1e-9)
                    bar.set_postfix_str(
                        f"est. speed input: {prompt_tokens / elapsed:.2f} toks/s, "
                        f"output: {output_tokens / elapsed:.2f} toks/s", refresh=False)
                    bar.update(done)
        except BaseException:
            for rid in self._pending:
                if not self._done(rid):
                    self._engine.abort(rid)
            self._pending = {rid: r for rid, r in self._pending.items() if self._done(rid)}
            self._finished = {rid: s for rid, s in self._finished.items() if rid in self._pending}
            self._checkers = {key: c for key, c in self._checkers.items() if key[0] in self._pending}
            self._drain_aborted()
            raise
        finally:
            if bar is not None:
                bar.close()
        ids = sorted(rid for rid in self._pending if self._done(rid))
        done_ids = set(ids)
        checkers = {key: self._checkers.pop(key) for key in list(self._checkers) if key[0] in done_ids}
        outputs = self._make_outputs(ids, [self._pending[rid] for rid in ids], self._finished, checkers)
        for rid in ids:
            del self._pending[rid]
            del self._finished[rid]
        return outputs

    def _stop_checker(self, sp: SamplingParams) -> StopStringChecker:
        return StopStringChecker(self._tokenizer, sp.stop, sp.include_stop_str_in_output, sp.min_tokens,
                                 sp.skip_special_tokens, sp.spaces_between_special_tokens)

    def _check_stop_strings(self, checker: StopStringChecker, out):
        """Feeds a step's tokens to the sample's stop strings; ends it on a match."""
        stopped_by_token = out.finished and out.finish_reason == _C.FinishReason.STOP
        if checker.update(out.new_token_ids, stopped_by_token) is not None and not out.finished:
            out = self._engine.finish_request(out.request_id, out.index)
        return out

    def _drain_aborted(self) -> None:
        """Steps until the engine is idle, so aborted requests are flushed out of it; requests
        queued by enqueue() run meanwhile, and their outputs are kept."""
        while self._engine.has_unfinished():
            self._collect(self._engine.step())

    def _abort(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            try:
                rid = int(request_id)
            except (TypeError, ValueError):
                continue  # not one of ours: vLLM ignores unknown ids too
            if self._pending.pop(rid, None) is not None:
                self._finished.pop(rid, None)
                self._checkers = {key: c for key, c in self._checkers.items() if key[0] != rid}
                self._engine.abort(rid)

    def _make_outputs(self, ids: list[int], requests, finished: dict[int, dict[int, Any]],
                      checkers: dict[tuple[int, int], StopStringChecker]) -> list[RequestOutput]:
        # Every sample of every request, in request then index order (vLLM's outputs order).
        keys = [(rid, i) for rid, r in zip(ids, requests) for i in range(r[2].n)]
        natives = [finished[rid][i] for rid, i in keys]
        params = [r[2] for r in requests for _ in range(r[2].n)]
        texts = self._decode_all(natives, params)
        token_text = self._token_text_table(natives, params)
        completions: dict[int, list[CompletionOutput]] = {rid: [] for rid in ids}
        prompt_logprobs: dict[int, Any] = {}
        for (rid, index), sp, native, text in zip(keys, params, natives, texts):
            finish_reason = _FINISH_REASONS.get(native.finish_reason)
            stop_reason: int | str | None = native.stop_token_id
            checker = checkers.get((rid, index))
            if checker is not None and checker.stop_string is not None:
                # A stop string ended it (it may also have hit a limit in the same step).
                text, finish_reason, stop_reason = checker.text, "stop", checker.stop_string
            logprobs = (self._logprobs(native, token_text if sp.detokenize else {})
                        if sp.logprobs is not None else None)
            if index == 0:
                prompt_logprobs[rid] = (self._prompt_logprobs(native, token_text if sp.detokenize else {})
                                        if sp.prompt_logprobs is not None else None)
            completions[rid].append(CompletionOutput(
                index=index,
                text=text,
                token_ids=list(native.token_ids),
                cumulative_logprob=native.cumulative_logprob if sp.logprobs is not None else None,
                logprobs=logprobs,
                finish_reason=finish_reason,
                stop_reason=stop_reason,
            ))
        return [RequestOutput(
            request_id=str(rid),
            prompt=prompt_text,
            prompt_token_ids=list(prompt_ids),
            prompt_logprobs=prompt_logprobs.get(rid),
            outputs=completions[rid],
            finished=True,
            num_cached_tokens=finished[rid][0].num_cached_tokens,
        ) for rid, (prompt_text, prompt_ids, _) in zip(ids, requests)]

    def _decode_all(self, natives: list[Any], params: list[SamplingParams]) -> list[str]:
        """Detokenizes every finished request at once, grouped by decoding options.

        As vLLM, the token that ended a request (EOS or a stop token id) is left out of its
        text unless include_stop_str_in_output.
        """
        texts = [""] * len(natives)
        if self._tokenizer is None:
            return texts
        groups: dict[tuple[bool, bool], list[int]] = {}
        for i, sp in enumerate(params):
            if sp.detokenize:
                groups.setdefault((sp.skip_special_tokens, sp.spaces_between_special_tokens), []).append(i)
        for (skip, spaces), members in groups.items():
            sequences = []
            for i in members:
                token_ids = list(natives[i].token_ids)
                if natives[i].finish_reason == _C.FinishReason.STOP and not params[i].include_stop_str_in_output:
                    token_ids = token_ids[:-1]
                sequences.append(token_ids)
            for i, text in zip(members, batch_decode(self._tokenizer, sequences, skip, spaces)):
                texts[i] = text
        return texts

    def _token_text_table(self, natives: list[Any], params: list[SamplingParams]) -> dict[int, str]:
        """decoded_token for every token a logprob is reported for, one batch decode.

        As vLLM: each token decoded alone, special tokens kept (a byte piece of a longer
        character reads as U+FFFD); nothing for detokenize=False.
        """
        if self._tokenizer is None:
            return {}
        wanted: set[int] = set()
        for native, sp in zip(natives, params):
            if not sp.detokenize:
                continue
            positions = (list(native.logprobs) if sp.logprobs is not None else []) + (
                list(native.prompt_logprobs) if sp.prompt_logprobs is not None else [])
            for lp in positions:
                wanted.add(lp.sampled_token)
                wanted.update(lp.top_tokens)
        order = sorted(wanted)
        return dict(zip(order, self._tokenizer.batch_decode([[t] for t in order])))

    @staticmethod
    def _logprobs(native, token_text: dict[int, str]) -> list[dict[int, Logprob]]:
        return [_position_logprobs(lp, token_text) for lp in native.logprobs]

    @staticmethod
    def _prompt_logprobs(native, token_text: dict[int, str]) -> list[dict[int, Logprob] | None]:
        """None for the first prompt token (nothing predicts it), then per prompt token a
        dict of it and the top prompt_logprobs tokens."""
        return [None] + [_position_logprobs(lp, token_text) for lp in native.prompt_logprobs]

    # ---- beam search ------------------------------------------------------------------
    def beam_search(
        self,
        prompts: PromptType | Sequence[PromptType],
        params: BeamSearchParams,
        lora_request: Any = None,
        use_tqdm: bool = False,
        concurrency_limit: int | None = None,
    ) -> list[BeamSearchOutput]:
        """Beam search over each prompt, as vLLM's LLM.beam_search (see octavo.beam_search).

        prompts: a str, {"prompt": str}, {"prompt_token_ids": [...]}, or a list of these.
        Returns one BeamSearchOutput per prompt, in order, each with the best
        params.beam_width sequences, best first; a sequence's tokens and text include the
        prompt. Raises ValueError for bad params (beam_width < 1, max_tokens < 1,
        2 * beam_width above max_logprobs, a negative temperature, a non-finite
        length_penalty), a bad prompt, or requests queued with enqueue() still pending,
        before any work starts.
        """
        check_beam_search_params(params, self._args.option("max_logprobs"), concurrency_limit)
        if lora_request is not None:
            raise ValueError("lora_request is not supported yet by octavo")
        if self._pending:
            # Each beam step runs the engine to completion: queued requests would run (and
            # their outputs be lost to wait_for_completion) in the middle of the search.
            raise ValueError(f"beam_search cannot run while {len(self._pending)} request(s) queued with enqueue() "
                             "are pending: call wait_for_completion() first")
        prompt_ids = [self._prepare(p, SamplingParams(max_tokens=1), None)[1]
                      for p in self._normalize_prompts(prompts)]
        tokenizer = self._tokenizer
        if tokenizer is not None:
            eos, decode = tokenizer.eos_token_id, tokenizer.decode
        else:
            eos, decode = (self._info.eos_token_ids or [None])[0], (lambda tokens: "")

        def generate_step(token_lists: list[list[int]], sp: SamplingParams) -> list[RequestOutput]:
            return self.generate([{"prompt_token_ids": t} for t in token_lists], sp, use_tqdm=False)

        return run_beam_search(prompt_ids, params, generate_step=generate_step, eos_token_id=eos,
                               max_model_len=self._info.max_model_len, decode=decode, use_tqdm=use_tqdm,
                               concurrency_limit=concurrency_limit)

    # ---- metrics and sleep mode --------------------------------------------------------
    def get_metrics(self) -> list[metrics_utils.Metric]:
        """vLLM's engine metrics as Counter, Gauge and Histogram objects (octavo.metrics).

        The counters are always kept (they cost nothing measurable), so unlike vLLM this
        works whatever ``disable_log_stats`` says."""
        return metrics_utils.snapshot(self._engine.metrics(), self._model_name)

    def sleep(self, level: int = 1) -> None:
        """Frees the KV cache and, at ``level=2``, the weights, until ``wake_up()``.

        Level 1 copies the weights to host memory first (on the CPU backend they already
        are there and stay). Raises ValueError for another level and RuntimeError while
        requests added with ``enqueue`` are unfinished."""
        if isinstance(level, bool) or not isinstance(level, int):
            raise TypeError(f"level must be an int (1 or 2), got {level!r}")
        self._engine.sleep(level)

    def wake_up(self, tags: list[str] | None = None) -> None:
        """Restores what sleep() freed: ``tags`` ``["weights"]`` and/or ``["kv_cache"]``,
        or everything when None. Weights dropped at level 2 are read again from the
        checkpoint (vLLM leaves them for the caller to reload). Generating needs both."""
        if tags is None:
            tags = []
        elif isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise TypeError(f"tags must be a list of 'weights' / 'kv_cache' strings or None, got {tags!r}")
        self._engine.wake_up(list(tags))


def _position_logprobs(lp, token_text: dict[int, str]) -> dict[int, Logprob]:
    """One position's {token: Logprob}: the sampled (or prompt) token first, then the top N
    by rank, as vLLM orders them; decoded_token from token_text (None when absent)."""
    entry = {lp.sampled_token: Logprob(lp.sampled_logprob, lp.sampled_rank, token_text.get(lp.sampled_token))}
    for rank, (tok, value) in enumerate(zip(lp.top_tokens, lp.top_logprobs), start=1):
        if tok not in entry:
            entry[tok] = Logprob(value, rank, token_text.get(tok))
    return entry


class LLMEngine:
    """What ``LLM.llm_engine`` offers of vLLM's LLMEngine: aborting and counting requests."""

    def __init__(self, llm: LLM) -> None:
        self._llm = llm

    def abort_request(self, request_ids: str | Sequence[str], internal: bool = False) -> None:
        """Removes queued or running requests by id and frees their KV-cache blocks at once;
        they produce no output. Unknown or finished ids are ignored."""
        self._llm._abort([request_ids] if isinstance(request_ids, str) else list(request_ids))

    def get_num_unfinished_requests(self) -> int:
        return sum(1 for rid in self._llm._pending if not self._llm._done(rid))

    def has_unfinished_requests(self) -> bool:
        return self.get_num_unfinished_requests() > 0

    def get_metrics(self) -> list[metrics_utils.Metric]:
        return self._llm.get_metrics()

    def is_sleeping(self) -> bool:
        """True from ``LLM.sleep()`` until ``wake_up`` has restored weights and KV cache."""
        return self._llm._engine.is_sleeping()


def _progress_bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Processed prompts", dynamic_ncols=True)
