#!/usr/bin/env bash
# Builds the paged-attention, sampling, norm and rope kernels for the CPU emulator and checks
# them, the attention, norms and rope against float64 and the sampling against the CPU sampler:
#   tests/cuda_emulation/run.sh [CASES] [SEED]
# Needs g++ with C++20 and the CUDA headers (CUDA_HOME, default /usr/local/cuda); no GPU.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cuda_home="${CUDA_HOME:-/usr/local/cuda}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
flags=(-std=c++20 -O1 -w -U_FORTIFY_SOURCE -include "$here/cuda_emulation.h" -I"$root/cuda/kernels" -I"$root/cpp/src"
       -I"$cuda_home/include")
# Host code the sampling test links: the CPU sampler (the reference, built as the library
# builds it: -march=native, so its multiply-adds are fused the same way) and the packing.
host_flags=(-std=c++17 -O2 -w -I"$root/cpp/src" -I"$root/cpp/include" -I"$root/cuda" -I"$root/cuda/kernels"
            -I"$cuda_home/include")
# compile_kernels ARRAY SRC...: rewrites each kernel source for the emulator and compiles it
# in the background (the `wait` below collects them), appending the objects to ARRAY.
compile_kernels() {
  local -n into=$1
  shift
  for src; do
    local name
    name="$(basename "$src" .cu)"
    python3 "$here/to_host_source.py" "$src" "$work/$name.cc"
    g++ "${flags[@]}" -c "$work/$name.cc" -o "$work/$name.o" &
    into+=("$work/$name.o")
  done
}
objs=()
compile_kernels objs "$root"/cuda/kernels/attention/*.cu
g++ "${flags[@]}" -c "$here/paged_attention_emulation_test.cc" -o "$work/test.o" &
norm_rope_objs=()
compile_kernels norm_rope_objs "$root"/cuda/kernels/norm/rms_norm.cu "$root"/cuda/kernels/rope/rope.cu
g++ "${flags[@]}" -c "$here/norm_rope_emulation_test.cc" -o "$work/norm_rope_test.o" &
python3 "$here/to_host_source.py" "$root/cuda/kernels/sampling/sampling.cu" "$work/sampling.cc"
g++ "${flags[@]}" -c "$work/sampling.cc" -o "$work/sampling_1024.o" &
g++ "${flags[@]}" -DOCTAVO_SAMPLING_THREADS=128 -c "$work/sampling.cc" -o "$work/sampling_128.o" &
g++ "${host_flags[@]}" -march=native -c "$root/cpp/src/backend/cpu/cpu_sampling.cc" -o "$work/cpu_sampling.o" &
for src in cpp/src/core/tensor.cc cpp/src/core/dtype.cc cuda/backend/sampling_pack.cc; do
  g++ "${host_flags[@]}" -c "$root/$src" -o "$work/$(basename "$src" .cc).o" &
done
g++ "${host_flags[@]}" -std=c++20 -c "$here/sampling_emulation_test.cc" -o "$work/sampling_test.o" &
wait
g++ -o "$work/test" "${objs[@]}" "$work/test.o"
g++ -o "$work/norm_rope_test" "${norm_rope_objs[@]}" "$work/norm_rope_test.o"
sampling_objs=("$work/sampling_test.o" "$work/cpu_sampling.o" "$work/tensor.o" "$work/dtype.o" "$work/sampling_pack.o")
g++ -o "$work/sampling_1024" "$work/sampling_1024.o" "${sampling_objs[@]}"
g++ -o "$work/sampling_128" "$work/sampling_128.o" "${sampling_objs[@]}"
echo "== rms_norm, add_rms_norm, rope (+ KV-cache write)"
"$work/norm_rope_test" "${1:-20}" "${2:-1}"
# The default paths on the emulated sm_90 (tensor-core decode, the wgmma FlashAttention-3-style
# prefill), the FlashAttention-2-style prefill (OCTAVO_PREFILL_FLASH, the sm_80 default), then
# the classic CUDA-core decode and wmma prefill (paged_attention.cu: OCTAVO_CLASSIC_ATTENTION).
for mode in wgmma flash classic; do
  export OCTAVO_PREFILL_FLASH=$([ $mode = flash ] && echo 1 || echo 0)
  export OCTAVO_CLASSIC_ATTENTION=$([ $mode = classic ] && echo 1 || echo 0)
  echo "== prefill: $mode"
  "$work/test" 0 1 fixed
  "$work/test" 0 "${2:-1}" long   # multi-tile prefill, many-split decode, groups 1..16
  "$work/test" "${1:-20}" "${2:-1}"
done
unset OCTAVO_CLASSIC_ATTENTION OCTAVO_PREFILL_FLASH
EMU_SMEM=80000 "$work/test" 6 "${2:-1}"   # fp16/bf16 prefill on the CUDA-core tiles
EMU_SMEM=40000 "$work/test" 4 "${2:-1}"   # prefill on the simple kernel
"$work/sampling_128" "${1:-20}" "${2:-1}"   # many cases on 128-thread blocks
"$work/sampling_1024" 3 "${2:-1}" nosweeps  # the production block of 1024 threads
# Blocks last first: the split path's last CTA of a row is then its first segment's.
EMU_REVERSE_BLOCKS=1 "$work/sampling_128" 2 "${2:-1}" nosweeps
