// The timing harness of octavo_bench_kernels: times one op per case (warm-up, repetitions,
// median and spread), cycles input sets so the working set exceeds the last-level cache,
// and turns bytes and FLOPs per call into GB/s, GFLOP/s and a percentage of the two
// ceilings (memory copy bandwidth, GEMM rate) measured at the start of the same run.
//
// Why not Google Benchmark: every line needs ceilings measured in the same process and
// run, input rotation sized from the op's bytes, median + min/max rather than mean, and
// our own JSON for bench/plot_kernels.py; and the CUDA backend must be timed by the same
// code with device events (a DeviceClock) rather than host wall time. Google Benchmark
// gives the loop but none of those, and would be one more dependency to fetch.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace octavo::bench {

// Times one region of device work. The CPU backend uses HostClock; a CUDA backend records
// events on its stream in start() and waits on the end event in stop_ms().
class DeviceClock {
 public:
  virtual ~DeviceClock() = default;
  virtual void start() = 0;
  // Milliseconds since start(), once the device work issued since then has finished.
  virtual double stop_ms() = 0;
};

// Host wall time bracketed by a device synchronisation (a no-op on the CPU backend).
class HostClock final : public DeviceClock {
 public:
  explicit HostClock(std::function<void()> synchronize) : synchronize_(std::move(synchronize)) {}
  void start() override;
  double stop_ms() override;

 private:
  std::function<void()> synchronize_;
  double start_s_ = 0.0;
};

struct TimingConfig {
  int warmup = 2;  // untimed calls before the first repetition (fewer past half the budget)
  int reps = 15;                  // repetitions at most
  int min_reps = 3;               // repetitions at least, whatever max_case_seconds says
  double max_case_seconds = 0.6;  // stop repeating once the timed repetitions took this long
  // Calls batched into one repetition so that one lasts at least this long: single
  // microsecond calls would measure the clock, not the op.
  double min_rep_ms = 0.5;
};

// What to time: call(set) runs the op once on input set `set` (0 <= set < sets). reset(set),
// if given, runs untimed after each call, for ops that consume their input (sampling edits
// its logits in place); it forces one call per repetition.
struct TimedOp {
  std::function<void(int set)> call;
  int sets = 1;
  std::function<void(int set)> reset;
};

// Per-call times over the repetitions, in milliseconds.
struct Stats {
  double median_ms = 0.0;
  double min_ms = 0.0;
  double max_ms = 0.0;
  int reps = 0;
  int calls_per_rep = 1;
};

Stats time_op(const TimedOp& op, const TimingConfig& config, DeviceClock& clock);

// Median, min and max of per-call samples (ms).
Stats summarize(std::vector<double> samples_ms, int calls_per_rep);

// How many input sets of bytes_per_set to cycle so that together they span several times
// the last-level cache (harness.cc says how many): the next set is then gone from it.
int rotation_sets(int64_t bytes_per_set, int64_t llc_bytes);

// The two ceilings of the roofline, measured at the start of the run.
struct Ceilings {
  double memory_gbps = 0.0;   // large copy, bytes read + bytes written
  double gemm_gflops = 0.0;   // the backend's GEMM on a square problem
  Stats memory_stats;
  Stats gemm_stats;
  std::string memory_method;  // how each was measured, for the JSON and the header
  std::string gemm_method;
};

// One benchmarked case: what ran, what it must move and compute, and how long it took.
struct CaseResult {
  std::string name;    // the op, e.g. "decode_attention"
  std::string shape;   // e.g. "b=16 ctx=2048 hq=32 hkv=8 d=128"
  nlohmann::json params;
  double bytes = 0.0;  // fewest bytes one call must move (inputs read once, outputs written once)
  double flops = 0.0;  // floating-point operations of one call (nominal counts, see each bench)
  int sets = 1;        // input sets cycled
  Stats stats;
};

// Achieved rates of a case and where it sits against the ceilings: an op whose arithmetic
// intensity is under the ridge point (gemm / memory) is bound by bandwidth, else by FLOPs;
// percent_of_ceiling is achieved / attainable on the roofline.
struct Achieved {
  double gbps = 0.0;
  double gflops = 0.0;
  double intensity = 0.0;  // FLOP per byte
  bool memory_bound = true;
  double percent_of_ceiling = 0.0;
};
Achieved achieved(const CaseResult& r, const Ceilings& c);

// One aligned line: name shape median [min-max] rate %ceiling.
std::string format_line(const CaseResult& r, const Ceilings& c);
std::string format_header();

// The machine the run is on: CPU model (from /proc/cpuinfo), logical CPUs, LLC size.
struct MachineInfo {
  std::string cpu_model;
  int logical_cpus = 0;
  int64_t llc_bytes = 0;
};
// llc_override_bytes > 0 replaces the size read from sysfs (32 MiB when sysfs has none).
MachineInfo read_machine_info(int64_t llc_override_bytes);

nlohmann::json to_json(const Stats& s);
nlohmann::json to_json(const CaseResult& r, const Ceilings& c);

}  // namespace octavo::bench
