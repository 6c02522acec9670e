#!/usr/bin/env bash
# One device call: build octavo with CUDA, run the GPU op tests (CUDA vs CPU backend), the
# GPU engine tests (vs HF transformers), and, with "bench", the benchmarks. Logs and JSON
# go under $OUT. Usage (from the repo root, on the GPU machine): tests/gpu/run_on_device.sh [bench|bench-only]
set -uo pipefail
OUT=${OUT:-/tmp/octavo-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0
step() { echo "== $*"; }

step "carried build inputs (.whl: nlohmann-json, scipy-openblas32, libgtest-dev)"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
mkdir -p /tmp/gtest && dpkg -x .whl/libgtest-dev_*.deb /tmp/gtest || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

step "cmake build (sm_90)"
cmake -S . -B build/gpu -G Ninja -DOCTAVO_CUDA=ON -DOCTAVO_TESTS=ON -DOCTAVO_EXAMPLES=ON -DOCTAVO_BENCH=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=/tmp/gtest/usr -DPython_EXECUTABLE="$(command -v python3)" \
  > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
cmake --build build/gpu -j 16 > "$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -40; exit 1; }

step "GPU op tests: CUDA backend vs CPU backend"
./build/gpu/octavo_gpu_tests 2>&1 | tee "$OUT/gpu_ops.log" | grep -E "^\[  (FAILED|PASSED|  OK|SKIPPED) |Failure|error|relative" | head -60
[ "${PIPESTATUS[0]}" = 0 ] || status=1

step "python package with CUDA"
python3 -m pip install -q --no-build-isolation --no-deps . -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90 \
  -Ccmake.define.OCTAVO_CUDA=ON > "$OUT/pip.log" 2>&1 || { tail -30 "$OUT/pip.log"; exit 1; }

if [ "${1:-}" != "bench-only" ]; then
step "GPU engine tests vs HF"
(cd /tmp && python3 -m pytest "$OLDPWD/tests/gpu" -q -p no:cacheprovider -x 2>&1) | tee "$OUT/gpu_pytest.log" | tail -25
[ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

if [ "${1:-}" = "bench" ] || [ "${1:-}" = "bench-only" ]; then
  R=$PWD
  python3 bench/make_bench_model.py llama3-8b /tmp/llama3-8b > /dev/null
  step "kernel microbenchmarks (CUDA backend, bf16), against the copy and GEMM ceilings"
  ./build/gpu/octavo_bench_kernels --backend cuda --dtype bfloat16 --json "$OUT/kernels_cuda.json" \
    > "$OUT/kernels_cuda.log" 2>&1; tail -40 "$OUT/kernels_cuda.log"
  if [ -n "${PROFILE:-}" ]; then
    step "profile: batch ${PROFILE} decode, Llama-3-8B shape"
    (cd /tmp && python3 "$R/bench/profile_step.py" --model /tmp/llama3-8b --batch-size "$PROFILE" --input-len 128 \
      --output-len 32 2>&1) | tee "$OUT/profile.log" | tail -40
  fi
  step "batch-1 decode latency, Llama-3-8B shape, dummy bf16, 128 in / 128 out"
  (cd /tmp && python3 -m octavo bench latency --model /tmp/llama3-8b --load-format dummy --dtype bfloat16 --batch-size 1 \
    --input-len 128 --output-len 128 --num-iters-warmup 2 --num-iters 5 --max-model-len 2048 \
    --output-json "$OUT/latency_8b.json" 2>&1) | tee "$OUT/latency_8b.log" | grep -vE "it/s|Warming" | tail -12
  step "offline throughput, Llama-3-8B shape, dummy bf16, ${NUM_PROMPTS:=200} prompts x 1024 in / 128 out"
  (cd /tmp && python3 -m octavo bench throughput --model /tmp/llama3-8b --load-format dummy --dtype bfloat16 \
    --num-prompts "$NUM_PROMPTS" --input-len 1024 --output-len 128 --max-model-len 2048 --disable-tqdm \
    --output-json "$OUT/throughput_8b.json" 2>&1) | tee "$OUT/throughput_8b.log" | tail -6
fi
exit $status
