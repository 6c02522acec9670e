#include "harness.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

namespace octavo::bench {

namespace {

// Four times the LLC: see rotation_sets(). Measured on a 32 MiB L3 (one-row RMSNorm):
// twice the LLC still read ~10% faster than eight times, four times was within the noise
// of eight. At most this many sets, so a one-row op does not allocate many thousands of
// tensors (4096 sets of 32 KiB already span 128 MiB).
constexpr int64_t kRotationCacheMultiple = 4;
constexpr int kMaxRotationSets = 4096;
// Used when sysfs does not say: the L3 of the CPU this was written on.
constexpr int64_t kDefaultLlcBytes = int64_t{32} << 20;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\n");
  const size_t e = s.find_last_not_of(" \t\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// "32768K" / "32M" / "1024" (sysfs cache size) to bytes; 0 when unreadable.
int64_t parse_cache_size(const std::string& text) {
  try {
    size_t used = 0;
    const int64_t value = std::stoll(text, &used);
    const char unit = used < text.size() ? text[used] : ' ';
    if (unit == 'K') return value << 10;
    if (unit == 'M') return value << 20;
    if (unit == 'G') return value << 30;
    return value;
  } catch (const std::exception&) {
    return 0;
  }
}

int64_t read_llc_bytes() {
  int64_t best = 0;
  int best_level = 0;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_file(dir + "level"), size_file(dir + "size");
    int level = 0;
    std::string size;
    if (!(level_file >> level) || !(size_file >> size)) continue;
    if (level >= best_level) {
      best_level = level;
      best = parse_cache_size(size);
    }
  }
  return best > 0 ? best : kDefaultLlcBytes;
}

std::string read_cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return trim(line.substr(colon + 1));
    }
  }
  return "unknown";
}

std::string format_ms(double ms) {
  char buf[32];
  if (ms >= 100.0) {
    std::snprintf(buf, sizeof buf, "%.1f", ms);
  } else if (ms >= 1.0) {
    std::snprintf(buf, sizeof buf, "%.3f", ms);
  } else {
    std::snprintf(buf, sizeof buf, "%.4f", ms);
  }
  return buf;
}

}  // namespace

void HostClock::start() {
  synchronize_();
  start_s_ = now_seconds();
}

double HostClock::stop_ms() {
  synchronize_();
  return (now_seconds() - start_s_) * 1e3;
}

Stats summarize(std::vector<double> samples_ms, int calls_per_rep) {
  Stats s;
  s.reps = static_cast<int>(samples_ms.size());
  s.calls_per_rep = calls_per_rep;
  if (samples_ms.empty()) return s;
  std::sort(samples_ms.begin(), samples_ms.end());
  const size_t n = samples_ms.size();
  s.median_ms = n % 2 ? samples_ms[n / 2] : 0.5 * (samples_ms[n / 2 - 1] + samples_ms[n / 2]);
  s.min_ms = samples_ms.front();
  s.max_ms = samples_ms.back();
  return s;
}

Stats time_op(const TimedOp& op, const TimingConfig& config, DeviceClock& clock) {
  const int sets = std::max(1, op.sets);
  int64_t next_call = 0;
  // One timed region of `calls` calls, cycling the sets; returns ms per call.
  auto timed = [&](int calls) {
    int last_set = 0;
    clock.start();
    for (int c = 0; c < calls; ++c) {
      last_set = static_cast<int>(next_call++ % sets);
      op.call(last_set);
    }
    const double ms = clock.stop_ms();
    if (op.reset) op.reset(last_set);
    return ms / calls;
  };

  // Warm-up: at least one call (it also estimates the time of a call for batching), and
  // no more once warming up took half the case's budget: a call of seconds is warm after one.
  double estimate_ms = 0.0, warm_s = 0.0;
  for (int i = 0; i < std::max(1, config.warmup); ++i) {
    const double ms = timed(1);
    estimate_ms = i == 0 ? ms : std::min(estimate_ms, ms);
    warm_s += ms * 1e-3;
    if (warm_s >= 0.5 * config.max_case_seconds) break;
  }
  int calls_per_rep = 1;
  if (!op.reset && estimate_ms < config.min_rep_ms) {
    const double wanted = std::ceil(config.min_rep_ms / std::max(estimate_ms, 1e-6));
    calls_per_rep = static_cast<int>(std::min(wanted, 100000.0));
  }

  std::vector<double> samples;
  double spent_s = 0.0;
  while (static_cast<int>(samples.size()) < std::max(config.reps, config.min_reps)) {
    if (static_cast<int>(samples.size()) >= config.min_reps && spent_s >= config.max_case_seconds)
      break;
    const double per_call = timed(calls_per_rep);
    samples.push_back(per_call);
    spent_s += per_call * calls_per_rep * 1e-3;
  }
  return summarize(std::move(samples), calls_per_rep);
}

int rotation_sets(int64_t bytes_per_set, int64_t llc_bytes) {
  if (bytes_per_set <= 0) return 1;
  const int64_t target = kRotationCacheMultiple * llc_bytes;
  const int64_t sets = (target + bytes_per_set - 1) / bytes_per_set;
  return static_cast<int>(std::clamp<int64_t>(sets, 1, kMaxRotationSets));
}

Achieved achieved(const CaseResult& r, const Ceilings& c) {
  Achieved a;
  const double seconds = r.stats.median_ms * 1e-3;
  if (seconds <= 0.0) return a;
  a.gbps = r.bytes / seconds * 1e-9;
  a.gflops = r.flops / seconds * 1e-9;
  a.intensity = r.bytes > 0.0 ? r.flops / r.bytes : 0.0;
  const double ridge = c.memory_gbps > 0.0 ? c.gemm_gflops / c.memory_gbps : 0.0;
  a.memory_bound = r.flops <= 0.0 || a.intensity < ridge;
  if (a.memory_bound) {
    a.percent_of_ceiling = c.memory_gbps > 0.0 ? 100.0 * a.gbps / c.memory_gbps : 0.0;
  } else {
    a.percent_of_ceiling = c.gemm_gflops > 0.0 ? 100.0 * a.gflops / c.gemm_gflops : 0.0;
  }
  return a;
}

std::string format_header() {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-17s %-38s %10s %-21s %16s %s", "op", "shape", "median_ms",
                "[min-max]", "rate", "%ceiling");
  return buf;
}

std::string format_line(const CaseResult& r, const Ceilings& c) {
  const Achieved a = achieved(r, c);
  const std::string spread = "[" + format_ms(r.stats.min_ms) + "-" + format_ms(r.stats.max_ms) + "]";
  char rate[64];
  if (a.memory_bound) {
    std::snprintf(rate, sizeof rate, "%9.2f GB/s   ", a.gbps);
  } else {
    std::snprintf(rate, sizeof rate, "%9.2f GFLOP/s", a.gflops);
  }
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-17s %-38s %10s %-21s %16s %5.1f%% %s", r.name.c_str(),
                r.shape.c_str(), format_ms(r.stats.median_ms).c_str(), spread.c_str(), rate,
                a.percent_of_ceiling, a.memory_bound ? "mem" : "gemm");
  return buf;
}

MachineInfo read_machine_info(int64_t llc_override_bytes) {
  MachineInfo m;
  m.cpu_model = read_cpu_model();
  m.logical_cpus = static_cast<int>(std::thread::hardware_concurrency());
  m.llc_bytes = llc_override_bytes > 0 ? llc_override_bytes : read_llc_bytes();
  return m;
}

nlohmann::json to_json(const Stats& s) {
  return {{"median_ms", s.median_ms}, {"min_ms", s.min_ms},   {"max_ms", s.max_ms},
          {"reps", s.reps},           {"calls_per_rep", s.calls_per_rep}};
}

nlohmann::json to_json(const CaseResult& r, const Ceilings& c) {
  const Achieved a = achieved(r, c);
  nlohmann::json j = to_json(r.stats);
  j["name"] = r.name;
  j["shape"] = r.shape;
  j["params"] = r.params;
  j["bytes"] = r.bytes;
  j["flops"] = r.flops;
  j["sets"] = r.sets;
  j["gbps"] = a.gbps;
  j["gflops"] = a.gflops;
  j["intensity_flop_per_byte"] = a.intensity;
  j["bound"] = a.memory_bound ? "memory" : "compute";
  j["percent_of_ceiling"] = a.percent_of_ceiling;
  return j;
}

}  // namespace octavo::bench
