// Sampler: turns each request's SamplingParams and token history into a SamplingRow
// (penalty inputs, allowed ids, logit bias, the tokens bad words and min_tokens ban, the
// seeded stream position) and has the backend draw one token per row. Stateless between steps: everything it needs is in
// the Request, so a preempted and recomputed request draws the same tokens.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "scheduler/request.h"

namespace octavo {

class Sampler {
 public:
  Sampler(Backend& backend, std::vector<int32_t> eos_token_ids);

  // logits: [requests.size(), vocab] float32, row i for requests[i]; modified in place.
  std::vector<SampleResult> sample(Tensor& logits, const std::vector<const Request*>& requests);

  const std::vector<int32_t>& eos_token_ids() const { return eos_token_ids_; }

 private:
  SamplingRow make_row(const Request& request) const;

  Backend& backend_;
  std::vector<int32_t> eos_token_ids_;
};

}  // namespace octavo
