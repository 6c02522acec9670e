#!/usr/bin/env bash
# One device call: build octavo with CUDA (the GPU op tests, the kernel microbenchmarks and
# the Python extension, from one build tree), run the GPU op tests (CUDA vs CPU backend), the
# GPU engine tests (vs HF transformers), and, with "bench", the benchmarks. Logs and JSON go
# under $OUT. Usage (from the repo root, on the GPU machine):
#   tests/gpu/run_on_device.sh [STEP...]
# Steps: ops (the GPU op tests, always run), pytest, latency, ab (the latency bench once with the
# defaults and once per AB_VARIANTS setting), throughput, kernels, sdpa, prefix,
# sleep, hf, attention (its kernel benchmarks only), repeat (the op tests matching REPEAT_FILTER,
# REPEAT times with and without programmatic dependent launch: for flaky tests), profile (PROFILE=<batch>, default 1: the
# kernel table of one decode step with graphs; PROFILE_EAGER=1 adds enforce_eager). Shorthands:
# no step = pytest; bench = pytest latency throughput kernels sdpa prefix sleep hf (and profile
# with PROFILE set); bench-only = bench without pytest.
# env: NUM_PROMPTS, HF_PROMPTS (0: no hf run), HF_BATCH, PROFILE=<batch>, PYTEST_TIMEOUT, LATENCY_TIMEOUT, THROUGHPUT_TIMEOUT
# The device machine has no network: the build inputs it lacks travel in .whl/ (gitignored;
# the device tool's carry: [".whl"]). Make it once on a machine with the registries:
#   mkdir -p .whl && cd .whl && python3 -m pip download --no-deps --only-binary=:all: \
#     --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d . nlohmann-json scipy-openblas32 \
#     && apt-get download libgtest-dev
set -uo pipefail
FINAL_OUT=${OUT:-/tmp/octavo-out}
# Logs and JSON are written to $FINAL_OUT/logs and packed into $FINAL_OUT/results.tar.gz at
# the end (the device tool returns only a few files per call).
OUT=$FINAL_OUT/logs
mkdir -p "$OUT"
pack() { tar czf "$FINAL_OUT/results.tar.gz" -C "$OUT" . && rm -rf "$OUT"; }
trap pack EXIT
export PYTHONUNBUFFERED=1
status=0
step() { echo "== $* ($(date +%T))"; }
R=$PWD

step "carried build inputs (.whl: nlohmann-json, scipy-openblas32, libgtest-dev)"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/gtest && dpkg -x .whl/libgtest-dev_*.deb /tmp/gtest || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

step "cmake build (sm_90a): op tests, kernel benchmarks, Python extension"
# 90a, not 90: the wgmma prefill kernel exists only in sm_90a code (plain 90 builds run
# prefill_flash on the H100).
PYTHONPATH=/tmp/site cmake -S . -B build/gpu -G Ninja -DOCTAVO_CUDA=ON -DOCTAVO_TESTS=ON -DOCTAVO_BENCH=ON \
  -DOCTAVO_PYTHON=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_PREFIX_PATH=/tmp/gtest/usr \
  -DPython_EXECUTABLE="$(command -v python3)" > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
cmake --build build/gpu -j 16 --target octavo_gpu_tests octavo_bench_kernels _C > "$OUT/build.log" 2>&1 ||
  { grep -E "error|FAILED" "$OUT/build.log" | head -40; exit 1; }
# The package from the source tree with the extension just built (no second build by pip).
rm -rf /tmp/pkg && mkdir -p /tmp/pkg && cp -r python/octavo /tmp/pkg/ && cp build/gpu/_C*.so /tmp/pkg/octavo/
export PYTHONPATH=/tmp/pkg:/tmp/site

step "GPU op tests: CUDA backend vs CPU backend"
# No `head` after tee: a reader that exits early kills the tests with SIGPIPE mid-run.
./build/gpu/octavo_gpu_tests > "$OUT/gpu_ops.log" 2>&1 || status=1
grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure" "$OUT/gpu_ops.log"
step "GPU attention op tests with prefill_flash instead of the wgmma prefill (OCTAVO_PREFILL_FLASH=1)"
OCTAVO_PREFILL_FLASH=1 ./build/gpu/octavo_gpu_tests --gtest_filter='*Attention*' > "$OUT/gpu_ops_flash.log" 2>&1 || status=1
grep -E "^\[  (FAILED|PASSED) |Failure" "$OUT/gpu_ops_flash.log"
step "GPU gemm_add_rms_norm op test with split-K by hand (OCTAVO_SPLIT_K=4)"
OCTAVO_SPLIT_K=4 ./build/gpu/octavo_gpu_tests --gtest_filter='*GemmAddRmsNorm*' > "$OUT/gpu_ops_split_k.log" 2>&1 || status=1
grep -E "^\[  (FAILED|PASSED) |Failure" "$OUT/gpu_ops_split_k.log"
step "GPU attention op tests with the classic kernels (OCTAVO_CLASSIC_ATTENTION=1)"
OCTAVO_CLASSIC_ATTENTION=1 ./build/gpu/octavo_gpu_tests --gtest_filter='*Attention*' > "$OUT/gpu_ops_classic.log" 2>&1 || status=1
grep -E "^\[  (FAILED|PASSED) |Failure" "$OUT/gpu_ops_classic.log"

# The steps asked for, shorthands expanded.
steps=()
[ $# = 0 ] && set -- pytest
for a in "$@"; do
  case "$a" in
    bench) steps+=(pytest latency throughput kernels sdpa prefix sleep hf); [ -n "${PROFILE:-}" ] && steps+=(profile) ;;
    bench-only) steps+=(latency throughput kernels sdpa prefix sleep hf); [ -n "${PROFILE:-}" ] && steps+=(profile) ;;
    ops) ;;
    *) steps+=("$a") ;;
  esac
done
# The config-only Llama-3-8B folder the benchmarks load with --load-format dummy.
python3 bench/make_bench_model.py llama3-8b /tmp/llama3-8b > /dev/null
NUM_PROMPTS=${NUM_PROMPTS:-200}

for s in "${steps[@]}"; do
  case "$s" in
  repeat)
    step "op tests ${REPEAT_FILTER:=*FusedRope*:*DummyWeights*} ${REPEAT:=8} times each with and without programmatic dependent launch"
    for pdl in 1 0; do
      passed=0
      for i in $(seq "$REPEAT"); do
        OCTAVO_PDL=$pdl ./build/gpu/octavo_gpu_tests --gtest_filter="$REPEAT_FILTER" > "$OUT/repeat_pdl${pdl}_$i.log" 2>&1 && passed=$((passed + 1))
      done
      echo "OCTAVO_PDL=$pdl: $passed of $REPEAT runs passed"
      grep -h "FAILED  \]" "$OUT"/repeat_pdl${pdl}_*.log | sort | uniq -c
    done ;;
  pytest)
    step "GPU engine tests vs HF"
    (cd /tmp && timeout "${PYTEST_TIMEOUT:-240}" python3 -m pytest "$R/tests/gpu" -q -p no:cacheprovider 2>&1) |
      tee "$OUT/gpu_pytest.log" | grep -vE "^\s*$" | tail -25
    [ "${PIPESTATUS[0]}" = 0 ] || status=1 ;;
  latency)
    step "batch-1 decode latency, Llama-3-8B shape, dummy bf16, 128 in / 128 out"
    (cd /tmp && OCTAVO_GEMM_TUNING_LOG=1 timeout ${LATENCY_TIMEOUT:-150} python3 -m octavo bench latency --model /tmp/llama3-8b --load-format dummy \
      --dtype bfloat16 --batch-size 1 --input-len 128 --output-len 128 --num-iters-warmup 2 --num-iters 5 --max-model-len 2048 \
      --output-json "$OUT/latency_8b.json" 2>&1) | tee "$OUT/latency_8b.log" | grep -E "Start-up|ready|Avg time|graphs|gemm tuning\] (1|8|64) x"
    ;;
  ab)
    # AB_VARIANTS: environment settings separated by ';', e.g. "OCTAVO_PDL=0;OCTAVO_SPLIT_K=4".
    for variant in "" ${AB_VARIANTS//;/ }; do
      step "batch-1 decode latency with ${variant:-the defaults}"
      (cd /tmp && env $variant timeout ${LATENCY_TIMEOUT:-150} python3 -m octavo bench latency --model /tmp/llama3-8b \
        --load-format dummy --dtype bfloat16 --batch-size 1 --input-len 128 --output-len 128 --num-iters-warmup 2 \
        --num-iters 5 --max-model-len 2048 2>&1) | tee "$OUT/latency_ab_${variant:-default}.log" | grep -E "Start-up|Avg time"
    done ;;
  throughput)
    step "offline throughput, Llama-3-8B shape, dummy bf16, ${NUM_PROMPTS} prompts x 1024 in / 128 out"
    (cd /tmp && timeout ${THROUGHPUT_TIMEOUT:-240} python3 -m octavo bench throughput --model /tmp/llama3-8b --load-format dummy --dtype bfloat16 \
      --num-prompts "$NUM_PROMPTS" --input-len 1024 --output-len 128 --max-model-len 2048 --disable-tqdm \
      --output-json "$OUT/throughput_8b.json" 2>&1) | tee "$OUT/throughput_8b.log" | tail -7 ;;
  kernels)
    step "kernel microbenchmarks (CUDA backend, bf16), against the copy and GEMM ceilings"
    timeout 150 ./build/gpu/octavo_bench_kernels --backend cuda --dtype bfloat16 --json "$OUT/kernels_cuda.json" \
      > "$OUT/kernels_cuda.log" 2>&1; grep -E "^(op|decode|prefill|sample|gemm|ceiling)" "$OUT/kernels_cuda.log"
    step "attention microbenchmarks with prefill_flash instead of the wgmma prefill (OCTAVO_PREFILL_FLASH=1)"
    OCTAVO_PREFILL_FLASH=1 timeout 90 ./build/gpu/octavo_bench_kernels --backend cuda --dtype bfloat16 --filter attention \
      --json "$OUT/kernels_attention_flash.json" > "$OUT/kernels_attention_flash.log" 2>&1
    grep -E "^(decode|prefill)" "$OUT/kernels_attention_flash.log"
    step "attention microbenchmarks with the classic kernels (OCTAVO_CLASSIC_ATTENTION=1)"
    OCTAVO_CLASSIC_ATTENTION=1 timeout 90 ./build/gpu/octavo_bench_kernels --backend cuda --dtype bfloat16 --filter attention \
      --json "$OUT/kernels_attention_classic.json" > "$OUT/kernels_attention_classic.log" 2>&1
    grep -E "^(decode|prefill)" "$OUT/kernels_attention_classic.log" ;;
  attention)
    step "attention microbenchmarks only"
    timeout 150 ./build/gpu/octavo_bench_kernels --backend cuda --dtype bfloat16 --filter attention \
      --json "$OUT/kernels_attention.json" > "$OUT/kernels_attention.log" 2>&1; grep -E "^(decode|prefill|ceiling)" "$OUT/kernels_attention.log"
    OCTAVO_PREFILL_FLASH=1 timeout 90 ./build/gpu/octavo_bench_kernels --backend cuda --dtype bfloat16 --filter attention \
      --json "$OUT/kernels_attention_flash.json" > "$OUT/kernels_attention_flash.log" 2>&1
    echo "-- with OCTAVO_PREFILL_FLASH=1:"; grep -E "^prefill" "$OUT/kernels_attention_flash.log" ;;
  sdpa)
    step "PyTorch scaled_dot_product_attention on the prefill shapes"
    python3 bench/sdpa_prefill.py --json "$OUT/sdpa.json" 2>&1 | tee "$OUT/sdpa.log" | tail -12 ;;
  prefix)
    step "prefix caching: ${NUM_PROMPTS} prompts, a shared 512-token prefix + 512 own tokens in / 128 out, with and without"
    for caching in enable no-enable; do
      (cd /tmp && timeout 200 python3 -m octavo bench throughput --model /tmp/llama3-8b --load-format dummy --dtype bfloat16 \
        --num-prompts "$NUM_PROMPTS" --prefix-len 512 --input-len 512 --output-len 128 --max-model-len 2048 --disable-tqdm \
        --${caching}-prefix-caching --output-json "$OUT/prefix_${caching}.json" 2>&1) | tee "$OUT/prefix_${caching}.log" | tail -4
    done ;;
  sleep)
    step "sleep / wake_up on the 8B shape: device memory by cudaMemGetInfo and nvidia-smi"
    (cd /tmp && timeout 150 python3 "$R/bench/sleep_memory.py" --model /tmp/llama3-8b --load-format dummy --dtype bfloat16 \
      --output-json "$OUT/sleep_memory.json" 2>&1) | tee "$OUT/sleep_memory.log" | tail -4 ;;
  hf)
    [ "${HF_PROMPTS:=256}" -gt 0 ] || continue
    step "offline throughput with --backend hf (transformers, dummy weights), ${HF_PROMPTS} prompts x 1024 in / 128 out"
    (cd /tmp && timeout 240 python3 -m octavo bench throughput --backend hf --model /tmp/llama3-8b --load-format dummy \
      --dtype bfloat16 --num-prompts "$HF_PROMPTS" --max-num-seqs "${HF_BATCH:-64}" --input-len 1024 --output-len 128 \
      --disable-tqdm --output-json "$OUT/throughput_8b_hf.json" 2>&1) | tee "$OUT/throughput_8b_hf.log" | tail -4 ;;
  profile)
    for eager in "" ${PROFILE_EAGER:+--enforce-eager}; do
      step "profile: batch ${PROFILE:-1} decode, Llama-3-8B shape ${eager}"
      (cd /tmp && timeout 150 python3 "$R/bench/profile_step.py" --model /tmp/llama3-8b --batch-size "${PROFILE:-1}" \
        --input-len 128 --output-len 64 --rows 40 $eager 2>&1) | tee "$OUT/profile${eager}.log" | tail -48
    done ;;
  *) echo "unknown step: $s"; status=1 ;;
  esac
done
step "done"
exit $status
