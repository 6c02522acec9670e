"""Benchmarks with vLLM's command lines: `octavo bench throughput` and `octavo bench latency`.

    octavo bench throughput --model DIR --input-len 128 --output-len 64 --num-prompts 64
    octavo bench latency --model DIR --batch-size 8 --backend hf

`--backend hf` runs the same requests through HF transformers (`hf_backend.HFRunner`,
needs torch). The modules: datasets (random and ShareGPT requests), backends (octavo and
HF behind one interface), throughput, latency.
"""
