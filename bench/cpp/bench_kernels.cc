// octavo_bench_kernels: times each kernel family of a backend over the case table, next to
// the memory and GEMM ceilings measured at the start of the same run.
//
//   octavo_bench_kernels [--backend cpu|cuda] [--dtype bfloat16|float16|float32]
//                        [--threads N] [--quick] [--json FILE]
//                        [--filter OP] [--reps N] [--warmup N] [--max-case-seconds S]
//                        [--llc-mib N]
//
// --backend cuda times with CUDA events on the backend's stream (cuda_clock.cc), sizes the
// input rotation from the GPU's L2 (--llc-mib overrides it) and measures the ceilings as a
// 1 GiB device-to-device copy and an 8192^3 bfloat16 GEMM. --dtype is the compute dtype
// (cuda: bfloat16 by default; cpu: float32 only).
//
// Prints one line per case (op, shape, median ms [min-max], GB/s or GFLOP/s, % of the
// ceiling that binds it); --json writes every number plus the ceilings and the machine,
// the input of bench/plot_kernels.py.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "cases.h"
#include "ceilings.h"
#include "cuda_clock.h"
#include "harness.h"
#include "kernel_benches.h"
#include "octavo/errors.h"

namespace octavo::bench {

void BenchContext::run(CaseResult result, const TimedOp& op) {
  result.stats = time_op(op, timing, clock);
  std::cout << format_line(result, ceilings) << std::endl;
  results.push_back(std::move(result));
}

namespace {

// Start and end ceilings further apart than this get a warning under the table.
constexpr double kCeilingDriftWarning = 0.2;

struct Options {
  std::string command_line;  // as given, for the JSON
  std::string backend = "cpu";
  std::string dtype;  // empty: the backend's default (cpu float32, cuda bfloat16)
  int threads = 0;  // 0: every logical CPU
  bool quick = false;
  std::string json_path;
  std::string filter;
  int reps = -1;  // -1: the mode's default
  int warmup = -1;
  double max_case_seconds = -1.0;
  int64_t llc_bytes = 0;  // 0: from sysfs
};

void print_usage(std::ostream& out) {
  out << "usage: octavo_bench_kernels [--backend cpu|cuda] [--dtype bfloat16|float16|float32]\n"
         "                            [--threads N] [--quick] [--json FILE]\n"
         "                            [--filter OP] [--reps N] [--warmup N]\n"
         "                            [--max-case-seconds S] [--llc-mib N]\n";
}

Options parse_args(int argc, char** argv) {
  Options o;
  o.command_line = argv[0];
  for (int i = 1; i < argc; ++i) o.command_line += std::string(" ") + argv[i];
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw InvalidArgument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--backend") {
      o.backend = value();
    } else if (arg == "--dtype") {
      o.dtype = value();
    } else if (arg == "--threads") {
      o.threads = std::stoi(value());
    } else if (arg == "--quick") {
      o.quick = true;
    } else if (arg == "--json") {
      o.json_path = value();
    } else if (arg == "--filter") {
      o.filter = value();
    } else if (arg == "--reps") {
      o.reps = std::stoi(value());
    } else if (arg == "--warmup") {
      o.warmup = std::stoi(value());
    } else if (arg == "--max-case-seconds") {
      o.max_case_seconds = std::stod(value());
    } else if (arg == "--llc-mib") {
      o.llc_bytes = std::stoll(value()) << 20;
    } else if (arg == "--help" || arg == "-h") {
      print_usage(std::cout);
      std::exit(0);
    } else {
      throw InvalidArgument("unknown argument '" + arg + "'");
    }
  }
  if (o.threads < 0) throw InvalidArgument("--threads must be >= 0");
  return o;
}

DType parse_dtype(const std::string& name) {
  if (name == "bfloat16" || name == "bf16") return DType::kBFloat16;
  if (name == "float16" || name == "fp16" || name == "half") return DType::kFloat16;
  if (name == "float32" || name == "fp32" || name == "float") return DType::kFloat32;
  throw InvalidArgument("--dtype must be bfloat16, float16 or float32, got '" + name + "'");
}

// The fraction of device memory the CUDA backend's memory plan may use; the benchmark
// allocates its own buffers and never asks for a KV-cache size, so it only has to be valid.
constexpr double kGpuMemoryUtilization = 0.9;

std::unique_ptr<Backend> make_backend(const Options& o, int threads) {
  if (o.backend == "cpu") {
    if (!o.dtype.empty() && parse_dtype(o.dtype) != DType::kFloat32) {
      throw InvalidArgument("--backend cpu computes in float32 only, got --dtype " + o.dtype);
    }
    return make_cpu_backend(threads);
  }
  if (o.backend == "cuda") {
#ifndef OCTAVO_WITH_CUDA
    throw Unsupported("--backend cuda: this octavo build has no CUDA backend (configure with "
                      "-DOCTAVO_CUDA=ON)");
#else
    if (!cuda_device_available()) {
      throw Unsupported("--backend cuda: no CUDA device is visible (cudaGetDeviceCount found "
                        "none, or the driver is missing)");
    }
    const DType dtype = o.dtype.empty() ? DType::kBFloat16 : parse_dtype(o.dtype);
    return make_cuda_backend(dtype, kGpuMemoryUtilization);
#endif
  }
  throw InvalidArgument("--backend must be cpu or cuda, got '" + o.backend + "'");
}

void print_ceilings(const char* when, const Ceilings& c) {
  std::printf("ceiling memory %s: %8.2f GB/s     [%.2f-%.2f ms]  %s\n", when, c.memory_gbps,
              c.memory_stats.min_ms, c.memory_stats.max_ms, c.memory_method.c_str());
  std::printf("ceiling gemm   %s: %8.2f GFLOP/s  [%.2f-%.2f ms]  %s\n", when, c.gemm_gflops,
              c.gemm_stats.min_ms, c.gemm_stats.max_ms, c.gemm_method.c_str());
}

nlohmann::json ceilings_json(const Ceilings& c) {
  nlohmann::json memory = to_json(c.memory_stats);
  memory["gbps"] = c.memory_gbps;
  memory["method"] = c.memory_method;
  nlohmann::json gemm = to_json(c.gemm_stats);
  gemm["gflops"] = c.gemm_gflops;
  gemm["method"] = c.gemm_method;
  return {{"memory", memory}, {"gemm", gemm}};
}

// Relative change of b against a.
double drift(double a, double b) { return a > 0.0 ? std::fabs(b - a) / a : 0.0; }

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

int run(const Options& o) {
  const auto run_start = std::chrono::steady_clock::now();
  const int threads = o.threads > 0 ? o.threads : omp_get_num_procs();
  std::unique_ptr<Backend> backend = make_backend(o, threads);
  const bool cuda = backend->name() == "cuda";
  const MachineInfo machine = read_machine_info(o.llc_bytes);
  // The last-level cache the input rotation must defeat: the GPU's L2 on CUDA.
  CudaDeviceInfo gpu;
  int64_t cache_bytes = machine.llc_bytes;
  if (cuda) {
    gpu = cuda_device_info();
    cache_bytes = o.llc_bytes > 0 ? o.llc_bytes : std::max<int64_t>(gpu.l2_bytes, int64_t{1} << 20);
  }
  std::unique_ptr<DeviceClock> clock_owner;
  if (cuda) {
    clock_owner = make_cuda_event_clock(*backend);
  } else {
    clock_owner = std::make_unique<HostClock>([&backend] { backend->synchronize(); });
  }
  DeviceClock& clock = *clock_owner;

  // Quick: the smoke run, seconds in all. Otherwise about a minute on a 2-core CPU.
  TimingConfig timing;
  if (o.quick) {
    timing.warmup = 1;
    timing.reps = 3;
    timing.min_reps = 1;
    timing.max_case_seconds = 0.05;
  }
  if (o.reps > 0) timing.reps = o.reps;
  if (o.warmup >= 0) timing.warmup = o.warmup;
  if (o.max_case_seconds >= 0.0) timing.max_case_seconds = o.max_case_seconds;

  CeilingConfig ceiling_config;
  ceiling_config.threads = threads;
  ceiling_config.copy_bytes = std::max<int64_t>(int64_t{256} << 20, 8 * machine.llc_bytes);
  ceiling_config.timing.warmup = 1;
  ceiling_config.timing.reps = ceiling_config.timing.min_reps = o.quick ? 3 : 5;
  ceiling_config.timing.max_case_seconds = 1e9;
  if (o.quick) ceiling_config.copy_bytes = 4 * machine.llc_bytes;
  if (cuda) {
    // At least 1 GiB each way (20x an H100's L2) and an 8192^3 GEMM, in quick runs too:
    // each is a millisecond or two on the GPU, and smaller ones do not fill it.
    ceiling_config.copy_bytes = std::max<int64_t>(int64_t{1} << 30, 8 * cache_bytes);
    ceiling_config.gemm_size = 8192;
  }

  std::printf("machine: %s, %d logical CPUs, LLC %lld MiB; backend %s (%s), %d threads\n",
              machine.cpu_model.c_str(), machine.logical_cpus,
              static_cast<long long>(machine.llc_bytes >> 20), backend->name().c_str(),
              dtype_name(backend->compute_dtype()).c_str(), threads);
  if (cuda) {
    std::printf("device: %s (cuda device %d), %d SMs, L2 %lld MiB, %lld MiB memory\n",
                gpu.name.c_str(), gpu.device, gpu.sm_count,
                static_cast<long long>(gpu.l2_bytes >> 20),
                static_cast<long long>(gpu.memory_bytes >> 20));
  }
  const Ceilings ceilings = measure_ceilings(*backend, clock, ceiling_config, 1000);
  print_ceilings("(start)", ceilings);
  std::printf("ridge point:            %8.2f FLOP/byte\n\n",
              ceilings.gemm_gflops / ceilings.memory_gbps);
  std::cout << format_header() << std::endl;

  BenchContext ctx{*backend, clock, timing, cache_bytes, ceilings, o.filter, 1, {}};
  const CaseTable& cases = kernel_cases(o.quick, cuda);
  bench_attention(ctx, cases);
  bench_elementwise(ctx, cases);
  bench_sampling(ctx, cases);
  bench_gemm(ctx, cases);


  // The ceilings again: on a shared machine the load can change during the run, and the
  // percentages above are only as good as the ceilings they divide by.
  Ceilings ceilings_end;
  if (!o.quick) {
    std::printf("\n");
    ceilings_end = measure_ceilings(*backend, clock, ceiling_config, 2000);
    print_ceilings("(end)  ", ceilings_end);
    if (drift(ceilings.memory_gbps, ceilings_end.memory_gbps) > kCeilingDriftWarning ||
        drift(ceilings.gemm_gflops, ceilings_end.gemm_gflops) > kCeilingDriftWarning) {
      std::printf("warning: the ceilings moved by more than %.0f%% during the run (a busy "
                  "machine?): the percentages are unreliable\n",
                  100.0 * kCeilingDriftWarning);
    }
  }

  const double total_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  std::printf("\n%zu cases in %.1f s\n", ctx.results.size(), total_s);

  if (!o.json_path.empty()) {
    nlohmann::json j;
    j["date_utc"] = utc_now();
    j["command"] = o.command_line;
    j["machine"] = {{"cpu_model", machine.cpu_model},
                    {"logical_cpus", machine.logical_cpus},
                    {"llc_bytes", machine.llc_bytes}};
    if (cuda) {
      j["device"] = {{"name", gpu.name},
                     {"index", gpu.device},
                     {"sm_count", gpu.sm_count},
                     {"l2_bytes", gpu.l2_bytes},
                     {"memory_bytes", gpu.memory_bytes}};
    }
    j["backend"] = {{"name", backend->name()},
                    {"compute_dtype", dtype_name(backend->compute_dtype())},
                    {"threads", threads},
                    {"clock", cuda ? "cuda events on the backend stream" : "host wall time"},
                    {"rotation_cache_bytes", cache_bytes}};
    j["quick"] = o.quick;
    j["timing"] = {{"warmup", timing.warmup},
                   {"reps", timing.reps},
                   {"min_reps", timing.min_reps},
                   {"max_case_seconds", timing.max_case_seconds},
                   {"min_rep_ms", timing.min_rep_ms}};
    j["ceilings"] = ceilings_json(ceilings);
    if (!o.quick) j["ceilings_end"] = ceilings_json(ceilings_end);
    j["results"] = nlohmann::json::array();
    for (const CaseResult& r : ctx.results) j["results"].push_back(to_json(r, ceilings));
    std::ofstream out(o.json_path);
    if (!out) throw Error("cannot write " + o.json_path);
    out << j.dump(2) << "\n";
    if (!out) throw Error("failed writing " + o.json_path);
    std::printf("wrote %s\n", o.json_path.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace octavo::bench

int main(int argc, char** argv) {
  octavo::bench::Options options;
  try {
    options = octavo::bench::parse_args(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "octavo_bench_kernels: " << e.what() << "\n";
    octavo::bench::print_usage(std::cerr);
    return 2;
  }
  try {
    return octavo::bench::run(options);
  } catch (const std::exception& e) {
    std::cerr << "octavo_bench_kernels: " << e.what() << "\n";
    return 1;
  }
}
