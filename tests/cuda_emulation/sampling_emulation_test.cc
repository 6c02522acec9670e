// launch_sample (cuda/kernels/sampling) against the CPU sampler (cpu::sample_row,
// cpu::logprobs_rows) on fresh random logits, through the CUDA backend's host packing
// (cuda/backend/sampling_pack.cc): small vocabularies, Gaussian, peaky and heavily tied
// logits, rows with -inf, every setting (greedy, temperature, min_p, top_k, top_p,
// allowed tokens, logit bias, penalties over random histories, banned tokens, logprobs up
// to past one sort chunk), prompt-logprobs rows, and the error rows. Tokens, ranks and
// top-N ids must be identical; logprobs within 1e-5; the logits must come back as they went
// in. Batches of up to kSamplingSplitMaxRows rows run the split path (their plain rows over
// several CTAs, the others on one); split_cases() also checks that the split path draws
// exactly what the one-CTA path draws. Runs the kernel through cuda_emulation.h; see run.sh.
//   sampling_emulation_test CASES SEED [nosweeps]   (nosweeps: skip the 16-draw sweeps, and
//                                                    run one 128256-token split batch, not two)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_sampling.h"
#include "backend/sampling_pack.h"
#include "octavo/errors.h"
#include "sampling/sampling.h"

extern "C" const char* cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }

using namespace octavo;

namespace {

int failures = 0;
int compared_rows = 0;
constexpr double kLogprobTolerance = 1e-5;

struct Row {
  SamplingRow settings;
  std::vector<int32_t> prompt, output, allowed, bias_tokens;
  std::vector<float> bias_values;
};

// The split path's workspace, one for the whole run as in the backend; poisoned once, so
// the kernels must reset what they use.
void* split_workspace() {
  static std::vector<unsigned char> workspace = [] {
    return std::vector<unsigned char>(cuda::sampling_split_workspace_bytes() + 16, 0xab);
  }();
  return workspace.data();
}

// Runs a packed batch through the emulated kernel, as CudaBackend::run_sampling does (with
// split = false, as launch_sample without a workspace: every row on one CTA).
std::vector<SampleResult> run_emulated(std::vector<float>& logits, int32_t vocab, const SamplingPack& pack,
                                       const std::vector<int32_t>& num_logprobs, bool split = true) {
  const SamplingLayout layout = sampling_layout(pack);
  std::vector<uint64_t> device_inputs(layout.device_input_bytes / 8 + 1);
  std::vector<uint64_t> results(layout.result_bytes / 8 + 1, ~0ull);  // poison: every field is written
  char* in = reinterpret_cast<char*>(device_inputs.data());
  write_sampling_upload(pack, layout, in);
  char* res = reinterpret_cast<char*>(results.data());
  cuda::launch_sample(logits.data(), vocab, static_cast<int32_t>(pack.params.size()), vocab,
                      reinterpret_cast<cuda::SamplingRowParams*>(in + layout.params),
                      reinterpret_cast<cuda::SamplingEdit*>(in + layout.edits),
                      reinterpret_cast<int32_t*>(in + layout.allowed), !pack.allowed.empty(),
                      reinterpret_cast<float*>(in + layout.edit_scratch),
                      reinterpret_cast<cuda::SampledToken*>(res + layout.tokens),
                      reinterpret_cast<int32_t*>(res + layout.top_tokens),
                      reinterpret_cast<float*>(res + layout.top_logprobs), pack.top_stride,
                      split ? split_workspace() : nullptr, nullptr);
  return unpack_sampling_results(num_logprobs, vocab, layout, pack.top_stride, res);
}

std::vector<SampleResult> sample_on_emulated_gpu(std::vector<float>& logits, int32_t vocab,
                                                 const std::vector<SamplingRow>& rows, bool split = true) {
  SamplingPack pack;
  pack_sampling_rows(rows, vocab, pack);
  std::vector<int32_t> num_logprobs;
  for (const SamplingRow& r : rows) num_logprobs.push_back(r.num_logprobs);
  return run_emulated(logits, vocab, pack, num_logprobs, split);
}

bool close(float a, float b) {
  if (std::isinf(a) || std::isinf(b) || std::isnan(a) || std::isnan(b)) return a == b || (std::isnan(a) && std::isnan(b));
  return std::fabs(static_cast<double>(a) - b) <= kLogprobTolerance;
}

std::string describe(const SamplingRow& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "T=%g top_k=%d top_p=%g min_p=%g rep=%g freq=%g pres=%g lp=%d banned=%zu hist=%d+%d allowed=%d bias=%d",
                s.temperature, s.top_k, s.top_p, s.min_p, s.repetition_penalty, s.frequency_penalty,
                s.presence_penalty, s.num_logprobs, s.banned_tokens.size(), s.num_prompt_tokens,
                s.num_output_tokens, s.num_allowed_tokens, s.num_logit_bias);
  return buf;
}

// "" when got matches want (CPU), else what differs.
std::string difference(const SampleResult& g, const SampleResult& w, size_t i) {
  char buf[512];
  buf[0] = 0;
  if (g.token != w.token) {
    std::snprintf(buf, sizeof buf, "row %zu token %d vs CPU %d", i, g.token, w.token);
  } else if (g.rank != w.rank || !close(g.logprob, w.logprob)) {
    std::snprintf(buf, sizeof buf, "row %zu logprob %.9g rank %d vs CPU %.9g rank %d", i, g.logprob, g.rank,
                  w.logprob, w.rank);
  } else if (g.top_tokens != w.top_tokens || g.top_logprobs.size() != w.top_logprobs.size()) {
    std::snprintf(buf, sizeof buf, "row %zu top tokens differ (%zu vs %zu)", i, g.top_tokens.size(),
                  w.top_tokens.size());
  } else {
    for (size_t j = 0; j < g.top_logprobs.size(); ++j) {
      if (!close(g.top_logprobs[j], w.top_logprobs[j])) {
        std::snprintf(buf, sizeof buf, "row %zu top logprob %zu: %.9g vs CPU %.9g", i, j, g.top_logprobs[j],
                      w.top_logprobs[j]);
        break;
      }
    }
  }
  return buf;
}

// One batch: the CPU sampler row by row on copies, the kernel on the batch, compared. With
// same_as_one_cta, a batch the split path takes must also give the one-CTA path's tokens
// and ranks exactly (and logprobs within 1e-6: the raw log-sum-exp is summed in another
// order).
void run_batch(const std::vector<float>& logits, int32_t vocab, std::vector<Row>& rows, const char* label,
               bool same_as_one_cta = false) {
  std::vector<SamplingRow> settings;
  for (Row& r : rows) {
    r.settings.prompt_tokens = r.prompt.data();
    r.settings.num_prompt_tokens = static_cast<int32_t>(r.prompt.size());
    r.settings.output_tokens = r.output.data();
    r.settings.num_output_tokens = static_cast<int32_t>(r.output.size());
    r.settings.allowed_tokens = r.allowed.data();
    r.settings.num_allowed_tokens = static_cast<int32_t>(r.allowed.size());
    r.settings.logit_bias_tokens = r.bias_tokens.data();
    r.settings.logit_bias_values = r.bias_values.data();
    r.settings.num_logit_bias = static_cast<int32_t>(r.bias_tokens.size());
    settings.push_back(r.settings);
  }
  std::vector<SampleResult> want(rows.size());
  std::string want_error;
  try {
    for (size_t i = 0; i < rows.size(); ++i) {
      std::vector<float> copy(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
      want[i] = cpu::sample_row(copy.data(), vocab, settings[i]);
    }
  } catch (const Error& e) {
    want_error = e.what();
  }
  std::vector<float> gpu_logits = logits;
  std::vector<SampleResult> got;
  std::string got_error;
  try {
    got = sample_on_emulated_gpu(gpu_logits, vocab, settings);
  } catch (const Error& e) {
    got_error = e.what();
  }
  bool ok = want_error == got_error;
  std::string why = ok ? "" : "error '" + got_error + "' vs CPU '" + want_error + "'";
  if (ok && std::memcmp(gpu_logits.data(), logits.data(), logits.size() * sizeof(float)) != 0) {
    ok = false;
    why = "logits not restored";
  }
  if (ok && want_error.empty()) {
    for (size_t i = 0; i < rows.size() && ok; ++i) {
      const std::string diff = difference(got[i], want[i], i);
      if (!diff.empty()) {
        ok = false;
        why = diff + " [" + describe(settings[i]) + "]";
      }
    }
    compared_rows += static_cast<int>(rows.size());
  }
  if (ok && want_error.empty() && same_as_one_cta) {
    std::vector<float> one_cta_logits = logits;
    const std::vector<SampleResult> one_cta = sample_on_emulated_gpu(one_cta_logits, vocab, settings, false);
    for (size_t i = 0; i < rows.size() && ok; ++i) {
      if (got[i].token != one_cta[i].token || got[i].rank != one_cta[i].rank ||
          std::fabs(static_cast<double>(got[i].logprob) - one_cta[i].logprob) > 1e-6) {
        ok = false;
        char buf[256];
        std::snprintf(buf, sizeof buf, "row %zu: split token %d rank %d logprob %.9g, one CTA %d %d %.9g [%s]", i,
                      got[i].token, got[i].rank, got[i].logprob, one_cta[i].token, one_cta[i].rank,
                      one_cta[i].logprob, describe(settings[i]).c_str());
        why = buf;
      }
    }
  }
  if (!ok) ++failures;
  std::printf("%s %s vocab=%d rows=%zu %s%s\n", ok ? "ok  " : "FAIL", label, vocab, rows.size(),
              want_error.empty() ? "" : ("error: " + want_error + " ").c_str(), why.c_str());
  std::fflush(stdout);
}

// compute_logprobs: a given token per row, against cpu::logprobs_rows.
void score_batch(std::mt19937& rng, const std::vector<float>& logits, int32_t vocab, const char* label) {
  const size_t n = logits.size() / vocab;
  std::vector<LogprobsRow> rows(n);
  std::vector<int32_t> num_logprobs;
  for (LogprobsRow& r : rows) {
    r.token = static_cast<int32_t>(rng() % vocab);
    r.num_logprobs = static_cast<int32_t>(rng() % 6);
    num_logprobs.push_back(r.num_logprobs);
  }
  std::vector<float> cpu_logits = logits;
  Tensor t(cpu_logits.data(), DType::kFloat32, {static_cast<int64_t>(n), vocab});
  const std::vector<SampleResult> want = cpu::logprobs_rows(t, rows, 1);
  std::vector<float> gpu_logits = logits;
  SamplingPack pack;
  pack_logprobs_rows(rows, vocab, pack);
  const std::vector<SampleResult> got = run_emulated(gpu_logits, vocab, pack, num_logprobs);
  std::string why;
  for (size_t i = 0; i < n && why.empty(); ++i) why = difference(got[i], want[i], i);
  if (why.empty() && std::memcmp(gpu_logits.data(), logits.data(), logits.size() * sizeof(float)) != 0) {
    why = "logits changed";
  }
  if (!why.empty()) ++failures;
  compared_rows += static_cast<int>(n);
  std::printf("%s %s vocab=%d rows=%zu %s\n", why.empty() ? "ok  " : "FAIL", label, vocab, n, why.c_str());
}

enum class Shape { kGaussian, kFlat, kPeaky, kTies, kSomeNegInf, kFewFinite };

std::vector<float> random_row(std::mt19937& rng, int32_t vocab, Shape shape) {
  std::vector<float> row(vocab);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> sigma_of(0.3f, 8.0f);
  const float sigma = shape == Shape::kFlat ? 0.3f : sigma_of(rng);
  for (float& x : row) x = sigma * normal(rng);
  switch (shape) {
    case Shape::kGaussian:
    case Shape::kFlat: break;
    case Shape::kPeaky: row[rng() % vocab] += 25.0f; row[rng() % vocab] += 22.0f; break;
    case Shape::kTies:  // a handful of distinct values: ties at every cut
      for (float& x : row) x = std::round(x / sigma * 1.5f) * 0.75f;
      break;
    case Shape::kSomeNegInf:
      for (float& x : row) if (rng() % 3 == 0) x = -INFINITY;
      break;
    case Shape::kFewFinite: {
      for (float& x : row) x = -INFINITY;
      const int finite = 1 + rng() % 3;
      for (int k = 0; k < finite; ++k) row[rng() % vocab] = normal(rng);
      break;
    }
  }
  return row;
}

template <typename T>
T pick(std::mt19937& rng, std::initializer_list<T> options) {
  return options.begin()[rng() % options.size()];
}

Row random_settings(std::mt19937& rng, int32_t vocab) {
  Row r;
  SamplingRow& s = r.settings;
  s.temperature = pick(rng, {0.0f, 1e-6f, 0.25f, 0.7f, 1.0f, 1.0f, 1.6f});
  s.top_k = pick(rng, {0, 0, -1, 1, 2, 5, 40, vocab - 1, vocab, vocab + 3});
  s.top_p = pick(rng, {1.0f, 1.0f, 0.95f, 0.8f, 0.5f, 0.1f, 1e-4f});
  s.min_p = pick(rng, {0.0f, 0.0f, 0.02f, 0.2f, 0.9f, 1.0f});
  if (rng() % 2) {
    s.repetition_penalty = pick(rng, {1.0f, 1.3f, 0.8f});
    s.frequency_penalty = pick(rng, {0.0f, 0.5f, -1.1f, 2.0f});
    s.presence_penalty = pick(rng, {0.0f, 0.8f, -0.3f});
    const int hot = 1 + rng() % std::min<int32_t>(vocab, 40);  // few distinct ids: repeats
    for (int i = rng() % 60; i > 0; --i) r.prompt.push_back(rng() % hot);
    for (int i = rng() % 40; i > 0; --i) r.output.push_back(rng() % (rng() % 2 ? hot : vocab));
  }
  for (int i = rng() % 4; i > 0 && rng() % 2; --i) s.banned_tokens.push_back(rng() % vocab);
  if (rng() % 5 == 0) {  // allowed_token_ids, duplicates included
    for (int i = 1 + rng() % 40; i > 0; --i) r.allowed.push_back(rng() % vocab);
  }
  if (rng() % 4 == 0) {  // logit_bias on distinct ids, some of them allowed or banned
    for (int i = rng() % 12; i > 0; --i) {
      const int32_t id = !r.allowed.empty() && rng() % 2 ? r.allowed[rng() % r.allowed.size()] : rng() % vocab;
      if (std::find(r.bias_tokens.begin(), r.bias_tokens.end(), id) != r.bias_tokens.end()) continue;
      r.bias_tokens.push_back(id);
      r.bias_values.push_back(std::uniform_real_distribution<float>(-8.0f, 8.0f)(rng));
    }
  }
  s.num_logprobs = pick(rng, {-1, -1, 0, 1, 5, 20});
  if (rng() % 16 == 0) s.num_logprobs = 1100;  // past one 1024-key sort chunk (clamped to vocab)
  s.seed = (static_cast<uint64_t>(rng()) << 32) | rng();
  s.draw_index = rng() % 1000;
  return r;
}

void random_case(std::mt19937& rng, int index) {
  const int32_t vocab = pick(rng, {50, 64, 97, 256, 1000, 2049, 3000});
  const int rows = 1 + rng() % 6;
  std::vector<float> logits;
  std::vector<Row> settings;
  for (int i = 0; i < rows; ++i) {
    const Shape shape = pick(rng, {Shape::kGaussian, Shape::kGaussian, Shape::kPeaky, Shape::kTies, Shape::kTies,
                                   Shape::kSomeNegInf});
    const std::vector<float> row = random_row(rng, vocab, shape);
    logits.insert(logits.end(), row.begin(), row.end());
    settings.push_back(random_settings(rng, vocab));
  }
  run_batch(logits, vocab, settings, ("random " + std::to_string(index)).c_str());
  score_batch(rng, logits, vocab, ("prompt logprobs " + std::to_string(index)).c_str());
}

// Rows that must fail (each alone: one failing row fails its batch) or hit edge paths.
void fixed_cases(std::mt19937& rng) {
  const int32_t vocab = 300;
  auto one = [&](Shape shape, auto&& set, const char* label) {
    std::vector<float> logits = random_row(rng, vocab, shape);
    std::vector<Row> rows(1);
    rows[0].settings.seed = rng();
    set(rows[0]);
    run_batch(logits, vocab, rows, label);
  };
  one(Shape::kFewFinite, [](Row& r) { r.settings.temperature = 0.0f; r.settings.num_logprobs = 3; }, "greedy few finite");
  one(Shape::kGaussian, [&](Row& r) {
        r.settings.temperature = 0.0f;
        for (int i = 0; i < vocab; ++i) r.settings.banned_tokens.push_back(i);
      }, "greedy all banned");
  one(Shape::kGaussian, [&](Row& r) {
        for (int i = 0; i < vocab; ++i) r.settings.banned_tokens.push_back(i);
      }, "sampled all banned");
  one(Shape::kFewFinite, [](Row& r) { r.settings.top_p = 0.3f; r.settings.top_k = 2; r.settings.num_logprobs = 20; },
      "few finite, filters");
  one(Shape::kGaussian, [](Row& r) { r.settings.temperature = 1e-5f; r.settings.top_p = 0.5f; }, "temperature at the greedy edge");
  one(Shape::kTies, [](Row& r) { r.settings.top_k = 7; r.settings.num_logprobs = 300; }, "ties, top-N = vocab");
  one(Shape::kGaussian, [](Row& r) { r.settings.min_p = 1.0f; r.settings.num_logprobs = 0; }, "min_p 1");
  {
    // Exactly 5 logits near the maximum, the rest far below: a selection of the 6th largest
    // must look past the first pass's window around the maximum.
    std::vector<float> logits(vocab, -50.0f);
    for (int i = 0; i < 5; ++i) logits[(i * 37) % vocab] = 10.0f - 0.5f * i;
    std::vector<Row> rows(2);
    rows[0].settings.num_logprobs = 6;
    rows[0].settings.top_k = 6;
    rows[1].settings.top_k = 6;
    rows[1].settings.temperature = 30.0f;  // flat enough that the 6th token gets drawn
    for (int i = 0; i < 2; ++i) rows[i].settings.seed = 3 + i;
    logits.insert(logits.end(), logits.begin(), logits.end());
    run_batch(logits, vocab, rows, "selection past the first-pass window");
  }
  one(Shape::kGaussian, [](Row& r) {
        r.settings.temperature = 0.0f;
        r.settings.num_logprobs = 5;
        r.allowed = {17, 3, 250, 3};
      }, "greedy within allowed tokens");
  one(Shape::kGaussian, [](Row& r) {
        r.settings.top_p = 0.7f;
        r.settings.top_k = 2;
        r.allowed = {17, 3, 250, 99, 100};
        r.bias_tokens = {250, 5};
        r.bias_values = {4.0f, 30.0f};  // 5 is not allowed: stays -inf
      }, "allowed tokens with bias and filters");
  one(Shape::kGaussian, [](Row& r) {
        r.allowed = {8, 9};
        r.settings.banned_tokens = {9, 8};
      }, "allowed tokens all banned");
  one(Shape::kGaussian, [](Row& r) {
        // The bias turns the sign the repetition penalty sees (vLLM: bias first).
        r.settings.temperature = 0.0f;
        r.settings.repetition_penalty = 3.0f;
        r.prompt = {0, 1, 2, 3, 4, 5};
        for (int32_t id = 0; id < 6; ++id) {
          r.bias_tokens.push_back(id);
          r.bias_values.push_back(40.0f);
        }
      }, "bias before repetition penalty");
  // Bad ids are refused before any device work, with the CPU sampler's message.
  one(Shape::kGaussian, [](Row& r) { r.allowed = {1, vocab + 2}; }, "allowed id out of range");
  one(Shape::kGaussian, [](Row& r) { r.settings.banned_tokens = {5, vocab}; }, "banned id out of range");
  one(Shape::kGaussian, [](Row& r) {
        r.settings.repetition_penalty = 1.2f;
        r.prompt = {3, -1};
      }, "history id out of range");
}

// The split path (batches of up to kSamplingSplitMaxRows): plain rows (greedy or
// temperature, num_logprobs -1 or 0) over vocabularies from 50 tokens (one segment holds
// the row) to 128256, greedy ties across segments, many seeds, the error rows, and plain
// rows batched with rows that must stay on one CTA. Each against the CPU sampler and, where
// it succeeds, against the one-CTA path.
void split_cases(std::mt19937& rng, bool large) {
  const int32_t max_rows = cuda::kSamplingSplitMaxRows;
  auto plain_row = [&](Row& r) {
    r.settings.temperature = pick(rng, {0.0f, 0.0f, 0.4f, 1.0f, 1.0f, 1.7f});
    r.settings.num_logprobs = pick(rng, {-1, -1, 0});
    r.settings.seed = (static_cast<uint64_t>(rng()) << 32) | rng();
    r.settings.draw_index = rng() % 1000;
  };
  for (const int32_t vocab : {50, 97, 1000, 4099, 32000, 128256}) {
    // Llama 3's vocabulary: one batch of 2 (the production block's run), or of 1 and 8.
    const std::vector<int> batches =
        vocab < 128256 ? std::vector<int>{1, 3, max_rows} : large ? std::vector<int>{1, max_rows} : std::vector<int>{2};
    for (const int batch : batches) {
      std::vector<float> logits;
      std::vector<Row> rows(batch);
      for (Row& r : rows) {
        const Shape shape = pick(rng, {Shape::kGaussian, Shape::kPeaky, Shape::kTies, Shape::kSomeNegInf, Shape::kFlat});
        const std::vector<float> row = random_row(rng, vocab, shape);
        logits.insert(logits.end(), row.begin(), row.end());
        plain_row(r);
      }
      if (batch == 2) {  // both kinds of row on the production block
        rows[0].settings.temperature = 0.0f;
        rows[1].settings.temperature = 1.0f;
      }
      run_batch(logits, vocab, rows, ("split: plain rows, batch " + std::to_string(batch)).c_str(), true);
    }
  }
  // Greedy ties: the maximum at several tokens in different segments and in one chunk.
  for (const int32_t vocab : {1000, 32000}) {
    std::vector<float> logits;
    std::vector<Row> rows(4);
    const std::vector<std::vector<int32_t>> tied = {{vocab - 1, 700, 999}, {vocab / 2 + 1, vocab / 2, vocab - 3},
                                                    {0, vocab - 1}, {130, 129, 131, 5}};
    for (int i = 0; i < 4; ++i) {
      std::vector<float> row = random_row(rng, vocab, Shape::kGaussian);
      for (const int32_t id : tied[i]) row[std::min(id, vocab - 1)] = 100.0f;
      logits.insert(logits.end(), row.begin(), row.end());
      rows[i].settings.temperature = 0.0f;
      rows[i].settings.num_logprobs = i % 2 ? 0 : -1;
    }
    run_batch(logits, vocab, rows, "split: greedy ties across segments", true);
  }
  // One row, many seeds and draw indices: every part of the distribution gets drawn.
  for (const Shape shape : {Shape::kGaussian, Shape::kFlat, Shape::kTies, Shape::kPeaky}) {
    const int32_t vocab = 4099;
    const std::vector<float> row = random_row(rng, vocab, shape);
    for (int batch = 0; batch < 3; ++batch) {
      std::vector<float> logits;
      std::vector<Row> rows(max_rows);
      for (int i = 0; i < max_rows; ++i) {
        logits.insert(logits.end(), row.begin(), row.end());
        rows[i].settings.temperature = shape == Shape::kPeaky ? 3.0f : 1.0f;
        rows[i].settings.seed = 100 + batch;
        rows[i].settings.draw_index = static_cast<uint64_t>(i * 37 + batch);
      }
      run_batch(logits, vocab, rows, "split: draws of one row", true);
    }
  }
  // Error rows, alone and among good rows (one failing row fails its batch).
  auto error_case = [&](float temperature, float bad_value, bool all, int batch, const char* label) {
    const int32_t vocab = 1000;
    std::vector<float> logits;
    std::vector<Row> rows(batch);
    for (int i = 0; i < batch; ++i) {
      std::vector<float> row = random_row(rng, vocab, Shape::kGaussian);
      if (i == batch - 1) {
        if (all) std::fill(row.begin(), row.end(), bad_value);
        else row[rng() % vocab] = bad_value;
      }
      logits.insert(logits.end(), row.begin(), row.end());
      rows[i].settings.temperature = temperature;
      rows[i].settings.num_logprobs = i % 2 - 1;
    }
    run_batch(logits, vocab, rows, label);
  };
  error_case(0.0f, -INFINITY, true, 1, "split: greedy, all -inf");
  error_case(0.0f, -INFINITY, true, 3, "split: greedy, all -inf among good rows");
  error_case(1.0f, -INFINITY, true, 1, "split: sampled, all -inf");
  error_case(1.0f, -INFINITY, true, 4, "split: sampled, all -inf among good rows");
  error_case(1.0f, NAN, false, 1, "split: sampled, a NaN");
  error_case(0.7f, NAN, true, 2, "split: sampled, all NaN");
  error_case(1.0f, INFINITY, false, 2, "split: sampled, +inf");
  error_case(0.0f, INFINITY, false, 2, "split: greedy, +inf");
  {
    // Greedy with only -inf and a NaN left out of the maximum.
    const int32_t vocab = 500;
    std::vector<float> logits = random_row(rng, vocab, Shape::kFewFinite);
    std::vector<Row> rows(1);
    rows[0].settings.temperature = 0.0f;
    rows[0].settings.num_logprobs = 0;
    run_batch(logits, vocab, rows, "split: greedy, few finite", true);
  }
  // Plain rows batched with rows the split path leaves to one CTA (filters, top-N logprobs,
  // penalties, allowed lists, bans, prompt-logprobs-like settings): both kinds in one launch.
  for (const int32_t vocab : {97, 3000}) {
    std::vector<float> logits;
    std::vector<Row> rows;
    for (int i = 0; i < max_rows; ++i) {
      const std::vector<float> row = random_row(rng, vocab, pick(rng, {Shape::kGaussian, Shape::kTies}));
      logits.insert(logits.end(), row.begin(), row.end());
      rows.push_back(i % 2 ? random_settings(rng, vocab) : Row{});
      if (i % 2 == 0) plain_row(rows.back());
    }
    rows[1].settings.top_p = 0.9f;  // at least one row that is not plain
    run_batch(logits, vocab, rows, "split: plain rows among filtered ones", true);
  }
}

// Many draws of one row: a filter cut one token off (or a tie kept in the wrong order)
// shows in some of them.
void draw_sweeps(std::mt19937& rng) {
  struct Sweep {
    Shape shape;
    float temperature, top_p, min_p, repetition;
    int32_t top_k;
    const char* label;
  };
  const Sweep sweeps[] = {
      {Shape::kGaussian, 0.8f, 0.9f, 0.0f, 1.0f, 0, "draws: top_p 0.9"},
      {Shape::kGaussian, 0.8f, 0.5f, 0.0f, 1.0f, 300, "draws: top_k 300, top_p 0.5"},
      {Shape::kTies, 1.0f, 0.6f, 0.0f, 1.0f, 0, "draws: ties, top_p 0.6"},
      {Shape::kTies, 1.0f, 1.0f, 0.0f, 1.0f, 30, "draws: ties, top_k 30"},
      {Shape::kGaussian, 1.3f, 1.0f, 0.1f, 1.0f, 0, "draws: min_p 0.1"},
      {Shape::kFlat, 1.5f, 1.0f, 0.0f, 1.0f, 4, "draws: flat, top_k 4"},
      {Shape::kFlat, 1.0f, 1.0f, 0.0f, 1.0f, 150, "draws: flat, top_k 150"},
      {Shape::kFlat, 1.0f, 0.3f, 0.0f, 1.0f, 0, "draws: flat, top_p 0.3 (past 128 tokens)"},
      {Shape::kGaussian, 0.9f, 0.7f, 0.0f, 1.4f, 0, "draws: repetition 1.4, top_p 0.7"},
  };
  const int32_t sweep_vocab = 2000;
  for (const Sweep& sw : sweeps) {
    const std::vector<float> row = random_row(rng, sweep_vocab, sw.shape);
    std::vector<int32_t> history;
    for (int i = 0; i < 200; ++i) history.push_back(rng() % 64);
    std::vector<float> logits;
    std::vector<Row> rows(16);
    for (int i = 0; i < 16; ++i) {
      logits.insert(logits.end(), row.begin(), row.end());
      SamplingRow& s = rows[i].settings;
      s.temperature = sw.temperature;
      s.top_p = sw.top_p;
      s.min_p = sw.min_p;
      s.top_k = sw.top_k;
      s.repetition_penalty = sw.repetition;
      s.frequency_penalty = sw.repetition != 1.0f ? 0.3f : 0.0f;
      rows[i].prompt = history;
      rows[i].output.assign(history.begin(), history.begin() + 50);
      s.seed = 11;
      s.draw_index = i;
    }
    run_batch(logits, sweep_vocab, rows, sw.label);
  }
  // Equal weights put top_p x total exactly on a running sum: the CPU keeps the token that
  // reaches it and drops the rest (4 tokens, top_p 0.5: two survive). 256 tokens at top_p
  // 0.75 put the cut past the first 128 (the fallback search of the 128-thread build).
  for (const auto& [finite, top_p] : {std::pair<int, float>{4, 0.5f}, std::pair<int, float>{256, 0.75f}}) {
    const int32_t vocab = 600;
    std::vector<float> row(vocab, -INFINITY);
    for (int i = 0; i < finite; ++i) row[(i * 7) % vocab] = 1.0f;
    std::vector<float> logits;
    std::vector<Row> rows(16);
    for (int i = 0; i < 16; ++i) {
      logits.insert(logits.end(), row.begin(), row.end());
      rows[i].settings.top_p = top_p;
      rows[i].settings.seed = 5;
      rows[i].settings.draw_index = i;
    }
    run_batch(logits, vocab, rows, finite == 4 ? "draws: top_p on an exact running sum" : "draws: exact sum past 128");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int cases = argc > 1 ? std::atoi(argv[1]) : 20;
  const unsigned seed = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 1u;
  std::mt19937 rng(seed);
  const bool sweeps = !(argc > 3 && std::string(argv[3]) == "nosweeps");
  fixed_cases(rng);
  split_cases(rng, sweeps);
  if (sweeps) draw_sweeps(rng);
  for (int i = 0; i < cases; ++i) random_case(rng, i);
  std::printf("%s: %d failures, %d rows compared\n", failures ? "FAILED" : "PASSED", failures, compared_rows);
  return failures ? 1 : 0;
}
