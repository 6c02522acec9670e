"""Device memory freed by LLM.sleep and taken back by wake_up, read from the device's counters.

    python bench/sleep_memory.py --model /tmp/llama3-8b --load-format dummy --dtype bfloat16

Prints, after each of start-up, sleep(level) and wake_up: the bytes in use on the device as
cudaMemGetInfo reports them (Engine.memory_info) and as nvidia-smi reports them (all
processes), then checks that greedy outputs after waking equal those before sleeping.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess

from octavo import LLM, SamplingParams

GiB = 1 << 30


def smi_used_mib() -> str:
    """nvidia-smi's memory.used for GPU 0, or 'n/a' without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return "n/a"
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() + " MiB" if out.returncode == 0 else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--load-format", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--output-json", default=None)
    args = parser.parse_args()

    llm = LLM(args.model, load_format=args.load_format, dtype=args.dtype, max_model_len=args.max_model_len)
    info = llm._engine.info
    prompts = [{"prompt_token_ids": list(range(10 + i, 138 + i))} for i in range(4)]
    params = SamplingParams(temperature=0.0, max_tokens=32, ignore_eos=True)

    def outputs() -> list[list[int]]:
        return [list(o.outputs[0].token_ids) for o in llm.generate(prompts, params, use_tqdm=False)]

    def used() -> int:
        return llm._engine.memory_info()[0]

    before = outputs()
    rows = []
    print(f"weights {info.weight_bytes / GiB:.2f} GiB, KV cache {info.kv_cache_bytes / GiB:.2f} GiB")
    for level in args.levels:
        awake = used()
        smi_awake = smi_used_mib()
        llm.sleep(level=level)
        asleep = used()
        smi_asleep = smi_used_mib()
        llm.wake_up()
        woken = used()
        same = outputs() == before
        row = {"level": level, "awake_bytes": awake, "asleep_bytes": asleep, "woken_bytes": woken,
               "freed_bytes": awake - asleep, "nvidia_smi_awake": smi_awake, "nvidia_smi_asleep": smi_asleep,
               "same_outputs_after_wake_up": same}
        rows.append(row)
        print(f"sleep(level={level}): in use {awake / GiB:.2f} -> {asleep / GiB:.2f} GiB (freed "
              f"{(awake - asleep) / GiB:.2f} GiB; nvidia-smi {smi_awake} -> {smi_asleep}); after wake_up "
              f"{woken / GiB:.2f} GiB; outputs after wake_up identical: {same}")
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump({"weight_bytes": info.weight_bytes, "kv_cache_bytes": info.kv_cache_bytes, "rows": rows}, f,
                      indent=2)
    if not all(r["same_outputs_after_wake_up"] for r in rows):
        raise SystemExit("outputs changed after wake_up")


if __name__ == "__main__":
    main()
