// octavo._C.testing: the CPU sampler's transform and draw, exposed so the Python tests can
// check them against an independent reference. Not part of the public API.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <map>
#include <optional>

#include "backend/backend.h"
#include "backend/cpu/cpu_sampling.h"

namespace py = pybind11;

namespace octavo::bindings {

namespace {

struct RowArgs {
  SamplingRow row;
  std::vector<int32_t> prompt, output, allowed, bias_tokens;
  std::vector<float> bias_values;
};

// Points the row's sparse lists at storage the RowArgs owns (call once the vectors are final).
void set_lists(RowArgs& a, std::optional<std::vector<int32_t>> allowed, const std::map<int32_t, float>& logit_bias,
               std::vector<int32_t> banned) {
  if (allowed) {
    a.allowed = std::move(*allowed);
    a.row.allowed_tokens = a.allowed.data();
    a.row.num_allowed_tokens = static_cast<int32_t>(a.allowed.size());
  }
  for (const auto& [token, bias] : logit_bias) {
    a.bias_tokens.push_back(token);
    a.bias_values.push_back(bias);
  }
  a.row.logit_bias_tokens = a.bias_tokens.data();
  a.row.logit_bias_values = a.bias_values.data();
  a.row.num_logit_bias = static_cast<int32_t>(a.bias_tokens.size());
  a.row.banned_tokens = std::move(banned);
}

RowArgs make_row(float temperature, int32_t top_k, float top_p, float min_p, float presence,
                 float frequency, float repetition, std::vector<int32_t> prompt,
                 std::vector<int32_t> output, uint64_t seed, uint64_t draw_index, int32_t num_logprobs) {
  RowArgs a;
  a.prompt = std::move(prompt);
  a.output = std::move(output);
  a.row.temperature = temperature;
  a.row.top_k = top_k;
  a.row.top_p = top_p;
  a.row.min_p = min_p;
  a.row.presence_penalty = presence;
  a.row.frequency_penalty = frequency;
  a.row.repetition_penalty = repetition;
  a.row.seed = seed;
  a.row.draw_index = draw_index;
  a.row.num_logprobs = num_logprobs;
  a.row.prompt_tokens = a.prompt.data();
  a.row.num_prompt_tokens = static_cast<int32_t>(a.prompt.size());
  a.row.output_tokens = a.output.data();
  a.row.num_output_tokens = static_cast<int32_t>(a.output.size());
  return a;
}

}  // namespace

void register_testing(py::module_& m) {
  m.def(
      "sampling_distribution",
      [](py::array_t<float, py::array::c_style | py::array::forcecast> logits, float temperature, int32_t top_k,
         float top_p, float min_p, float presence_penalty, float frequency_penalty, float repetition_penalty,
         std::vector<int32_t> prompt_tokens, std::vector<int32_t> output_tokens,
         std::optional<std::vector<int32_t>> allowed_token_ids, std::map<int32_t, float> logit_bias,
         std::vector<int32_t> banned_tokens) {
        RowArgs a = make_row(temperature, top_k, top_p, min_p, presence_penalty, frequency_penalty,
                             repetition_penalty, std::move(prompt_tokens), std::move(output_tokens), 0, 0, -1);
        set_lists(a, std::move(allowed_token_ids), logit_bias, std::move(banned_tokens));
        std::vector<float> probs =
            cpu::sampling_distribution(logits.data(), static_cast<int32_t>(logits.size()), a.row);
        return py::array_t<float>(static_cast<py::ssize_t>(probs.size()), probs.data());
      },
      py::kw_only(), py::arg("logits"), py::arg("temperature") = 1.0f, py::arg("top_k") = 0,
      py::arg("top_p") = 1.0f, py::arg("min_p") = 0.0f, py::arg("presence_penalty") = 0.0f,
      py::arg("frequency_penalty") = 0.0f, py::arg("repetition_penalty") = 1.0f,
      py::arg("prompt_tokens") = std::vector<int32_t>{}, py::arg("output_tokens") = std::vector<int32_t>{},
      py::arg("allowed_token_ids") = std::nullopt, py::arg("logit_bias") = std::map<int32_t, float>{},
      py::arg("banned_tokens") = std::vector<int32_t>{},
      "The distribution the CPU sampler draws from for one row of logits, after allowed ids, "
      "banned ids, logit bias, penalties, temperature, min_p, top_k and top_p.");

  m.def(
      "logprobs",
      [](py::array_t<float, py::array::c_style | py::array::forcecast> logits, std::vector<int32_t> tokens,
         int32_t num_logprobs) {
        // logits [rows, vocab]; one token per row. Returns (logprob, rank, top tokens, top logprobs) per row.
        if (logits.ndim() != 2 || static_cast<size_t>(logits.shape(0)) != tokens.size())
          throw py::value_error("logits must be [len(tokens), vocab]");
        Tensor t(const_cast<float*>(logits.data()), DType::kFloat32, {logits.shape(0), logits.shape(1)});
        std::vector<LogprobsRow> rows;
        for (int32_t token : tokens) rows.push_back({token, num_logprobs});
        auto backend = make_cpu_backend(0);
        py::list out;
        for (const SampleResult& r : backend->compute_logprobs(t, rows)) {
          out.append(py::make_tuple(r.logprob, r.rank, r.top_tokens, r.top_logprobs));
        }
        return out;
      },
      py::kw_only(), py::arg("logits"), py::arg("tokens"), py::arg("num_logprobs") = 0,
      "The CPU backend's compute_logprobs: raw logprob and rank of each row's token, and its top N.");

  m.def(
      "sample_tokens",
      [](py::array_t<float, py::array::c_style | py::array::forcecast> logits, float temperature, int32_t top_k,
         float top_p, float min_p, uint64_t seed, std::vector<uint64_t> draw_indices) {
        // One row per draw index, all over the same logits: a batch of independent draws.
        const int32_t vocab = static_cast<int32_t>(logits.size());
        auto backend = make_cpu_backend(0);
        std::vector<float> batch(static_cast<size_t>(vocab) * draw_indices.size());
        std::vector<RowArgs> args;
        std::vector<SamplingRow> rows;
        for (size_t i = 0; i < draw_indices.size(); ++i) {
          std::copy(logits.data(), logits.data() + vocab, batch.begin() + static_cast<int64_t>(i) * vocab);
          args.push_back(make_row(temperature, top_k, top_p, min_p, 0, 0, 1, {}, {}, seed, draw_indices[i], -1));
        }
        for (RowArgs& a : args) rows.push_back(a.row);
        Tensor t(batch.data(), DType::kFloat32, {static_cast<int64_t>(draw_indices.size()), vocab});
        std::vector<int32_t> tokens;
        {
          py::gil_scoped_release release;
          for (const SampleResult& r : backend->sample(t, rows)) tokens.push_back(r.token);
        }
        return tokens;
      },
      py::kw_only(), py::arg("logits"), py::arg("temperature") = 1.0f, py::arg("top_k") = 0,
      py::arg("top_p") = 1.0f, py::arg("min_p") = 0.0f, py::arg("seed") = 0,
      py::arg("draw_indices") = std::vector<uint64_t>{0},
      "Draws one token per draw index from the same logits with the CPU sampler.");
}

}  // namespace octavo::bindings
