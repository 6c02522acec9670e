"""Writes a config-only model folder for `--load-format dummy` benchmarks (no weights).

    python bench/make_bench_model.py llama3-8b /tmp/llama3-8b
    octavo bench throughput --model /tmp/llama3-8b --load-format dummy --dtype bfloat16 ...

The folder holds config.json with the named shape and a 1024-token BPE trained offline
(the benchmarks draw random token ids, so the tokenizer's vocabulary size does not matter).
"""

from __future__ import annotations

import argparse
import json
import os

SHAPES = {
    # Meta-Llama-3-8B's config.json values.
    "llama3-8b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": False,
        "bos_token_id": 128000, "eos_token_id": 128001, "torch_dtype": "bfloat16",
    },
    # The CPU comparison model of bench/cpu_vs_hf.py.
    "small-llama": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
        "hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 4,
        "num_attention_heads": 8, "num_key_value_heads": 8, "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out_dir")
    args = parser.parse_args()
    from octavo.testing.tiny_models import train_tiny_tokenizer

    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(SHAPES[args.shape], f, indent=2)
    train_tiny_tokenizer(args.out_dir, 1024)
    print(args.out_dir)


if __name__ == "__main__":
    main()
