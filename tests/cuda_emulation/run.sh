#!/usr/bin/env bash
# Builds the paged-attention kernels for the CPU emulator and checks them against float64:
#   tests/cuda_emulation/run.sh [CASES] [SEED]
# Needs g++ with C++20 and the CUDA headers (CUDA_HOME, default /usr/local/cuda); no GPU.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cuda_home="${CUDA_HOME:-/usr/local/cuda}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
flags=(-std=c++20 -O1 -w -U_FORTIFY_SOURCE -include "$here/cuda_emulation.h" -I"$root/cuda/kernels" -I"$cuda_home/include")
objs=()
for src in "$root"/cuda/kernels/attention/*.cu; do
  name="$(basename "$src" .cu)"
  python3 "$here/to_host_source.py" "$src" "$work/$name.cc"
  g++ "${flags[@]}" -c "$work/$name.cc" -o "$work/$name.o" &
  objs+=("$work/$name.o")
done
g++ "${flags[@]}" -c "$here/paged_attention_emulation_test.cc" -o "$work/test.o" &
wait
g++ -o "$work/test" "${objs[@]}" "$work/test.o"
"$work/test" 0 1 fixed
"$work/test" 0 "${2:-1}" long   # multi-tile prefill, many-split decode, groups 1..16
"$work/test" "${1:-20}" "${2:-1}"
EMU_SMEM=80000 "$work/test" 6 "${2:-1}"   # fp16/bf16 prefill on the CUDA-core tiles
EMU_SMEM=40000 "$work/test" 4 "${2:-1}"   # prefill on the simple kernel
