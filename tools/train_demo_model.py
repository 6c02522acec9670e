"""Train the built-in demo model (python/octavo/demo_model/) from text every Python has.

    python tools/train_demo_model.py [--out python/octavo/demo_model] [--device auto|cpu|cuda]

The corpus is the docstrings of the standard library's own source files (read with `ast`, no
module is imported) plus the reference topics that `pydoc` ships (pydoc_data/topics.py). A
byte-level BPE tokenizer is trained on it with `tokenizers`, then a small Llama
(LlamaForCausalLM from transformers) is trained from scratch with a plain torch loop in float32:
AdamW, linear warm-up then cosine decay, every seed fixed, deterministic kernels. The held-out
loss (every 20th text) is measured as training goes and the best checkpoint is the one kept.
The folder written is an ordinary HF
checkpoint (config.json, model.safetensors, generation_config.json, tokenizer files) plus a
model card (README.md) recording the corpus, the losses and the versions used.

Needs torch, transformers and tokenizers (octavo itself only reads the result). The held-out
loss is lowest after about ten passes over the corpus (~5M tokens): half a minute on one GPU,
hours on a two-core CPU. The corpus depends on the Python version, so another Python gives a
slightly different model; the model card records the one used.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import platform
import random
import shutil
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "python" / "octavo" / "demo_model"

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")  # ids 0..3: bos=1, eos=2 as in Llama

# A Llama small enough for a few CPU minutes and a ~10 MB fp16 file. Tied embeddings halve
# the vocabulary's share of the weights; head_dim 32 and 4 KV heads exercise GQA.
MODEL_CONFIG = {
    "vocab_size": 4096,
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 6,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 32,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "initializer_range": 0.02,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 3,
}
# Sampling defaults written to generation_config.json (what the demo uses): a model this small
# loops under greedy decoding, a mild temperature and nucleus keep the text varied but on topic.
GENERATION_DEFAULTS = {"do_sample": True, "temperature": 0.8, "top_p": 0.95, "repetition_penalty": 1.1}

# Directories of the standard library skipped: tests (mostly code, little prose) and
# third-party packages installed next to it.
_SKIP_DIRS = {"test", "tests", "site-packages", "dist-packages", "__pycache__"}
_MIN_DOC_CHARS = 40  # shorter docstrings are mostly "Return x." fragments


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus() -> list[str]:
    """Docstrings of every stdlib source file, then pydoc's topics; sorted walk, no duplicates."""
    root = stdlib_root()
    seen: set[str] = set()
    texts: list[str] = []

    def add(text: str | None) -> None:
        if text and len(text) >= _MIN_DOC_CHARS and text not in seen:
            seen.add(text)
            texts.append(text)

    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                tree = ast.parse(Path(dirpath, name).read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue  # a few stdlib files are deliberately invalid (lib2to3 test data)
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    add(ast.get_docstring(node))
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        topics = {}
    for key in sorted(topics):
        add(topics[key].strip())
    return texts


def train_tokenizer(texts: list[str], vocab_size: int, context: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    # Prompts open with <s>, as every training document does.
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", model_max_length=context)


def token_stream(tokenizer, texts: list[str]) -> np.ndarray:
    """Each text as <s> text </s>, all concatenated."""
    eos = tokenizer.eos_token_id
    encodings = tokenizer.backend_tokenizer.encode_batch(texts)  # the post-processor adds <s>
    return np.fromiter((t for e in encodings for t in (*e.ids, eos)), dtype=np.int64)


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def batches(stream: np.ndarray, context: int, batch_size: int, rng: np.random.Generator):
    """Endless random batches of `context`-token windows; each pass starts at a random offset."""
    import torch

    while True:
        offset = int(rng.integers(0, context))
        n = (len(stream) - offset) // context
        windows = stream[offset: offset + n * context].reshape(n, context)
        order = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            yield torch.from_numpy(windows[order[i: i + batch_size]])



def evaluate(model, stream: np.ndarray, context: int, batch_size: int, device: str) -> float:
    """Mean next-token loss over the held-out stream's whole windows."""
    import torch

    n = len(stream) // context
    windows = torch.from_numpy(stream[: n * context].reshape(n, context)).to(device)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, batch_size):
            x = windows[i: i + batch_size]
            total += model(input_ids=x, labels=x).loss.item() * len(x)
    model.train()
    return total / n


def sample_text(model, tokenizer, prompt: str, device: str, max_new_tokens: int = 40) -> str:
    """Greedy continuation (with a mild repetition penalty), to watch training progress."""
    import torch

    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
    model.eval()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.1,
                             pad_token_id=tokenizer.pad_token_id)
    model.train()
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def make_portable(out: Path) -> None:
    """Let transformers 4.x read what transformers 5 wrote: 4.x knows neither the "dtype" and
    "rope_parameters" config keys nor the "TokenizersBackend" tokenizer class."""
    config_path, tok_path = out / "config.json", out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.setdefault("torch_dtype", config.get("dtype"))
    config.setdefault("rope_theta", config.get("rope_parameters", {}).get("rope_theta", MODEL_CONFIG["rope_theta"]))
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tok = json.loads(tok_path.read_text())
    tok["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_path.write_text(json.dumps(tok, indent=2, sort_keys=True) + "\n")


def write_model_card(out: Path, info: dict) -> None:
    c = info["config"]
    lines = [
        "# octavo demo model",
        "",
        "A tiny Llama (LlamaForCausalLM) trained from scratch by `tools/train_demo_model.py` in the",
        "octavo repository, shipped inside the package so that `python -m octavo` runs with no download.",
        "It writes docstring-flavoured English about Python; it knows nothing else.",
        "",
        f"- Shape: {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, intermediate "
        f"{c['intermediate_size']}, {c['num_attention_heads']} heads ({c['num_key_value_heads']} KV heads, "
        f"head_dim {c['head_dim']}), context {c['max_position_embeddings']}, vocabulary {c['vocab_size']}, "
        f"tied embeddings: {info['parameters']:,} parameters, stored as {info['dtype']}.",
        f"- Corpus: docstrings of the Python {info['python']} standard library's source files plus "
        f"pydoc's reference topics: {info['documents']:,} texts, {info['train_tokens']:,} training tokens, "
        f"{info['val_tokens']:,} held-out tokens (every {info['holdout_every']}th text).",
        f"- Tokenizer: byte-level BPE trained on the same corpus with `tokenizers`; `<s>` opens every "
        f"prompt, `</s>` ends every text.",
        f"- Training: {info['steps']} steps of {info['batch_size']} x {c['max_position_embeddings']} tokens, "
        f"AdamW peak lr {info['lr']}, seed {info['seed']}, on {info['device']} in {info['minutes']:.1f} "
        f"minutes; kept the checkpoint of step {info['best_step']} (about {info['epochs']:.1f} passes over "
        f"the corpus), the lowest held-out loss.",
        f"- Loss: train {info['train_loss']:.3f}, held-out {info['val_loss']:.3f} "
        f"(perplexity {math.exp(info['val_loss']):.1f}).",
        f"- Versions: torch {info['torch']}, transformers {info['transformers']}, "
        f"tokenizers {info['tokenizers']}.",
        "",
        "Retrain: `python tools/train_demo_model.py` (writes this folder).",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="auto", help="auto (cuda when torch sees a GPU), cpu or cuda")
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16",
                        help="dtype of the saved weights (training is float32)")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=100)
    args = parser.parse_args(argv)

    import tokenizers
    import torch
    import transformers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = False
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    start = time.perf_counter()
    texts = corpus()
    holdout_every = 20
    train_texts = [t for i, t in enumerate(texts) if i % holdout_every]
    val_texts = [t for i, t in enumerate(texts) if i % holdout_every == 0]
    context = MODEL_CONFIG["max_position_embeddings"]
    tokenizer = train_tokenizer(train_texts, MODEL_CONFIG["vocab_size"], context)
    train_stream, val_stream = token_stream(tokenizer, train_texts), token_stream(tokenizer, val_texts)
    print(f"corpus: {len(texts)} texts from {stdlib_root()}, {len(train_stream)} train / "
          f"{len(val_stream)} held-out tokens ({time.perf_counter() - start:.1f} s)", flush=True)

    config = LlamaConfig(**MODEL_CONFIG, torch_dtype=args.dtype)
    model = LlamaForCausalLM(config).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    print(f"model: {parameters:,} parameters on {device}; {args.steps} steps of {args.batch_size} x "
          f"{context} tokens", flush=True)

    model.train()
    train_start = time.perf_counter()
    data = batches(train_stream, context, args.batch_size, rng)
    running = None
    best = {"val_loss": math.inf}
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        x = next(data).to(device)
        loss = model(input_ids=x, labels=x).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            elapsed = time.perf_counter() - train_start
            rate = done * args.batch_size * context / elapsed
            print(f"step {done}/{args.steps} loss {loss.item():.3f} (avg {running:.3f}) "
                  f"lr {optimizer.param_groups[0]['lr']:.2e} {rate:.0f} tok/s {elapsed / 60:.1f} min", flush=True)
        if done % args.eval_every == 0 or done == args.steps:
            val_loss = evaluate(model, val_stream, context, 32, device)
            if val_loss < best["val_loss"]:
                best = {"val_loss": val_loss, "step": done, "train_loss": running,
                        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            print(f"  held-out loss {val_loss:.3f} (best {best['val_loss']:.3f} at step {best['step']}); "
                  f"'Return a new list' -> {sample_text(model, tokenizer, 'Return a new list', device)!r}",
                  flush=True)
    minutes = (time.perf_counter() - train_start) / 60

    model = model.cpu()
    model.load_state_dict(best["state"])
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=3,
                                               **GENERATION_DEFAULTS)
    model.to(getattr(torch, args.dtype)).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    make_portable(out)
    write_model_card(out, {
        "config": MODEL_CONFIG, "parameters": parameters, "dtype": args.dtype,
        "python": platform.python_version(), "documents": len(texts), "holdout_every": holdout_every,
        "train_tokens": len(train_stream), "val_tokens": len(val_stream), "steps": args.steps,
        "best_step": best["step"], "batch_size": args.batch_size,
        "epochs": best["step"] * args.batch_size * context / len(train_stream), "lr": args.lr,
        "seed": args.seed, "device": torch.cuda.get_device_name() if device == "cuda" else
        f"{args.threads} CPU threads", "minutes": minutes, "train_loss": best["train_loss"],
        "val_loss": best["val_loss"], "torch": torch.__version__,
        "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
    })
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.1f} MB); kept step {best['step']}, held-out loss {best['val_loss']:.3f}",
          flush=True)


if __name__ == "__main__":
    main()
