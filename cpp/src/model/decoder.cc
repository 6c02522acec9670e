#include "model/decoder.h"

#include <cmath>
#include <string>

#include "octavo/errors.h"

namespace octavo {

namespace {
constexpr double kPi = 3.14159265358979323846;

// Llama 3.1's frequency-dependent scaling (transformers' _compute_llama3_parameters):
// long wavelengths are divided by `factor`, short ones kept, the band between smoothed.
double llama3_scale(double inv_freq, const RopeScaling& s) {
  const double old_len = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / s.low_freq_factor;
  const double high_freq_wavelen = old_len / s.high_freq_factor;
  const double wavelen = 2.0 * kPi / inv_freq;
  if (wavelen > low_freq_wavelen) return inv_freq / s.factor;
  if (wavelen < high_freq_wavelen) return inv_freq;
  const double smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  return (1.0 - smooth) * inv_freq / s.factor + smooth * inv_freq;
}
}  // namespace

HostTensor build_rope_table(const ModelConfig& c, int32_t max_position) {
  const int32_t d = c.head_dim;
  const int32_t half = d / 2;
  std::vector<double> inv_freq(half);
  for (int32_t i = 0; i < half; ++i) {
    // HF computes base ** (2i / d) in float32; the table itself is float32, as in HF.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(d);
    double f = 1.0 / std::pow(c.rope_theta, static_cast<double>(exponent));
    f = static_cast<float>(f);
    if (c.rope_scaling.type == "llama3") f = static_cast<float>(llama3_scale(f, c.rope_scaling));
    inv_freq[i] = f;
  }
  HostTensor table;
  table.shape = {max_position, d};
  table.values.resize(static_cast<size_t>(max_position) * d);
  for (int32_t p = 0; p < max_position; ++p) {
    float* row = table.values.data() + static_cast<size_t>(p) * d;
    for (int32_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * static_cast<float>(inv_freq[i]);
      row[i] = std::cos(angle);
      row[half + i] = std::sin(angle);
    }
  }
  return table;
}

DecoderModel::DecoderModel(const ModelConfig& config, ModelWeights weights, Backend& backend,
                           int32_t max_num_tokens, int32_t max_logit_rows, int32_t max_position)
    : config_(config),
      weights_(std::move(weights)),
      backend_(backend),
      max_num_tokens_(max_num_tokens),
      max_logit_rows_(max_logit_rows) {
  backend_.plan_attention(max_logit_rows_, max_position, config_.num_heads, config_.num_kv_heads, config_.head_dim);
  rope_storage_ = backend_.upload_float32(build_rope_table(config_, max_position));
  rope_.cos_sin = rope_storage_.as(DType::kFloat32, {max_position, config_.head_dim});

  const size_t e = dtype_size(backend_.compute_dtype());
  const size_t t = static_cast<size_t>(max_num_tokens_);
  const size_t hidden = config_.hidden_size;
  const size_t q_size = static_cast<size_t>(config_.num_heads) * config_.head_dim;
  const size_t qkv = q_size + 2 * static_cast<size_t>(config_.num_kv_heads) * config_.head_dim;
  const size_t inter = config_.intermediate_size;
  residual_ = backend_.allocate(t * hidden * e);
  hidden_ = backend_.allocate(t * hidden * e);
  qkv_ = backend_.allocate(t * qkv * e);
  attn_out_ = backend_.allocate(t * q_size * e);
  proj_out_ = backend_.allocate(t * hidden * e);
  gate_up_ = backend_.allocate(t * 2 * inter * e);
  act_ = backend_.allocate(t * inter * e);
  last_residual_ = backend_.allocate(static_cast<size_t>(max_logit_rows_) * hidden * e);
  last_delta_ = backend_.allocate(static_cast<size_t>(max_logit_rows_) * hidden * e);
  // Logits are float32 on every backend: the sampler reads them in float32.
  logits_ = backend_.allocate(static_cast<size_t>(max_logit_rows_) * config_.vocab_size * sizeof(float));
}

int64_t DecoderModel::kv_bytes_per_block(int32_t block_size) const {
  return 2LL * config_.num_layers * block_size * config_.num_kv_heads * config_.head_dim *
         static_cast<int64_t>(dtype_size(backend_.compute_dtype()));
}

KVCache DecoderModel::allocate_kv_cache(int32_t num_blocks, int32_t block_size) const {
  KVCache cache;
  cache.num_blocks = num_blocks;
  cache.block_size = block_size;
  cache.bytes_per_block = kv_bytes_per_block(block_size);
  const int64_t per_layer = static_cast<int64_t>(num_blocks) * block_size * config_.num_kv_heads *
                            config_.head_dim;
  const size_t e = dtype_size(backend_.compute_dtype());
  cache.storage = backend_.allocate(static_cast<size_t>(cache.bytes_per_block) * num_blocks, /*zero=*/true);
  char* base = static_cast<char*>(cache.storage.data());
  const std::vector<int64_t> shape = {num_blocks, block_size, config_.num_kv_heads, config_.head_dim};
  for (int32_t l = 0; l < config_.num_layers; ++l) {
    cache.keys.emplace_back(base + (2 * l) * per_layer * e, backend_.compute_dtype(), shape);
    cache.values.emplace_back(base + (2 * l + 1) * per_layer * e, backend_.compute_dtype(), shape);
  }
  return cache;
}

void DecoderModel::attention_block(const LayerWeights& layer, int32_t layer_index,
                                   const ForwardInputs& in, KVCache& cache, int32_t n) {
  const DType dt = backend_.compute_dtype();
  const int64_t d = config_.head_dim;
  const int64_t q_size = config_.num_heads * d;
  const int64_t kv_size = config_.num_kv_heads * d;

  Tensor hidden = hidden_.as(dt, {n, config_.hidden_size});
  Tensor qkv = qkv_.as(dt, {n, q_size + 2 * kv_size});
  Tensor qkv_bias;
  if (layer.qkv_bias.data() != nullptr) qkv_bias = layer.qkv_bias.as(dt, {q_size + 2 * kv_size});
  backend_.gemm(hidden, layer.qkv.as(dt, {q_size + 2 * kv_size, config_.hidden_size}),
                qkv_bias.data != nullptr ? &qkv_bias : nullptr, qkv);

  Tensor q = qkv.slice_cols(0, q_size).view_rows_as({config_.num_heads, d});
  Tensor k = qkv.slice_cols(q_size, q_size + kv_size).view_rows_as({config_.num_kv_heads, d});
  Tensor v = qkv.slice_cols(q_size + kv_size, q_size + 2 * kv_size).view_rows_as({config_.num_kv_heads, d});
  if (config_.qk_norm) {
    backend_.rms_norm(q, layer.q_norm.as(dt, {d}), config_.rms_norm_eps, q);
    backend_.rms_norm(k, layer.k_norm.as(dt, {d}), config_.rms_norm_eps, k);
  }
  backend_.rope_and_write_kv_cache(q, k, v, in.positions, rope_, in.slot_mapping, cache.keys[layer_index],
                                   cache.values[layer_index]);

  Tensor attn = attn_out_.as(dt, {n, config_.num_heads, d});
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  backend_.paged_attention(q, cache.keys[layer_index], cache.values[layer_index], in.attention, scale,
                           config_.sliding_window, attn);
}

Tensor DecoderModel::forward(const ForwardInputs& in, KVCache& cache) {
  const int32_t n = in.num_tokens;
  if (n <= 0 || n > max_num_tokens_) throw Error("DecoderModel::forward: bad token count");
  if (in.num_logit_rows > max_logit_rows_) throw Error("DecoderModel::forward: too many logit rows");
  if (in.num_prompt_logprob_rows < 0 || in.num_logit_rows + in.num_prompt_logprob_rows > n)
    throw Error("DecoderModel::forward: more logit rows than tokens");
  const DType dt = backend_.compute_dtype();
  const int64_t h = config_.hidden_size;
  const int64_t inter = config_.intermediate_size;
  const float eps = config_.rms_norm_eps;

  Tensor residual = residual_.as(dt, {n, h});
  Tensor hidden = hidden_.as(dt, {n, h});
  Tensor proj = proj_out_.as(dt, {n, h});
  Tensor gate_up = gate_up_.as(dt, {n, 2 * inter});
  Tensor act = act_.as(dt, {n, inter});

  const int64_t q_size = static_cast<int64_t>(config_.num_heads) * config_.head_dim;
  Tensor attn_2d = attn_out_.as(dt, {n, q_size});

  // Each projection that only joins the residual stream (o_proj, and down but the last
  // layer's) is fused with the norm after it: gemm_add_rms_norm.
  backend_.embedding(weights_.embed.as(dt, {config_.vocab_size, h}), in.token_ids, residual);
  backend_.rms_norm(residual, weights_.layers[0].input_norm.as(dt, {h}), eps, hidden);
  for (int32_t l = 0; l < config_.num_layers; ++l) {
    const LayerWeights& layer = weights_.layers[l];
    attention_block(layer, l, in, cache, n);
    backend_.gemm_add_rms_norm(attn_2d, layer.o_proj.as(dt, {h, q_size}), proj, residual,
                               layer.post_norm.as(dt, {h}), eps, hidden);
    backend_.gemm(hidden, layer.gate_up.as(dt, {2 * inter, h}), nullptr, gate_up);
    backend_.silu_mul(gate_up, act);
    const Tensor down = layer.down.as(dt, {h, inter});
    if (l + 1 < config_.num_layers) {
      backend_.gemm_add_rms_norm(act, down, proj, residual, weights_.layers[l + 1].input_norm.as(dt, {h}), eps,
                                 hidden);
    } else {
      // The last MLP output stays in proj: only the logit rows need its add and final norm.
      backend_.gemm(act, down, nullptr, proj);
    }
  }
  // Only the logit rows need the last residual add, the final norm and the LM head. Up to
  // max_logit_rows they are gathered first and normed alone; more (prompt logprobs of long
  // chunks) are normed in place over the whole step and gathered into proj_out_, which
  // the layers no longer need.
  const int32_t m = in.num_logit_rows + in.num_prompt_logprob_rows;
  num_sampling_rows_ = in.num_logit_rows;
  if (m == 0) {
    output_hidden_ = Tensor();
    return Tensor(logits_.data(), DType::kFloat32, {0, config_.vocab_size});
  }
  if (m <= max_logit_rows_) {
    Tensor last_residual = last_residual_.as(dt, {m, h});
    Tensor last_delta = last_delta_.as(dt, {m, h});
    backend_.gather_rows(residual, in.logit_indices, last_residual);
    backend_.gather_rows(proj, in.logit_indices, last_delta);
    output_hidden_ = hidden_.as(dt, {m, h});
    backend_.add_rms_norm(last_residual, last_delta, weights_.final_norm.as(dt, {h}), eps, output_hidden_);
  } else {
    backend_.add_rms_norm(residual, proj, weights_.final_norm.as(dt, {h}), eps, hidden);
    output_hidden_ = proj_out_.as(dt, {m, h});
    backend_.gather_rows(hidden, in.logit_indices, output_hidden_);
  }
  return lm_head(output_hidden_.slice_rows(0, num_sampling_rows_));
}

Tensor DecoderModel::prompt_logits(int32_t first, int32_t count) {
  const int64_t num_prompt_rows = output_hidden_.rows() - num_sampling_rows_;
  if (first < 0 || count < 0 || count > max_logit_rows_ || first + count > num_prompt_rows) {
    throw Error("DecoderModel::prompt_logits: rows [" + std::to_string(first) + ", " +
                std::to_string(first + count) + ") outside the last forward's " +
                std::to_string(num_prompt_rows) + " prompt-logprobs rows");
  }
  const int64_t begin = num_sampling_rows_ + first;
  return lm_head(output_hidden_.slice_rows(begin, begin + count));
}

Tensor DecoderModel::lm_head(const Tensor& hidden) {
  Tensor logits = logits_.as(DType::kFloat32, {hidden.rows(), config_.vocab_size});
  if (hidden.rows() == 0) return logits;
  const Buffer& head = weights_.lm_head.data() != nullptr ? weights_.lm_head : weights_.embed;
  backend_.gemm(hidden, head.as(backend_.compute_dtype(), {config_.vocab_size, config_.hidden_size}), nullptr,
                logits);
  return logits;
}

}  // namespace octavo
