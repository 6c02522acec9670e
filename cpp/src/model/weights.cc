#include "model/weights.h"

#include <string>

#include "octavo/errors.h"

namespace octavo {

namespace {

// Stacks tensors along dim 0 (q/k/v into qkv, gate/up into gate_up).
HostTensor concat_rows(const std::vector<HostTensor>& parts) {
  HostTensor out;
  out.shape = parts.at(0).shape;
  out.shape[0] = 0;
  for (const HostTensor& part : parts) {
    out.shape[0] += part.shape[0];
    out.values.insert(out.values.end(), part.values.begin(), part.values.end());
  }
  return out;
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (const int64_t d : shape) {
    if (d < 0) throw InvalidArgument("negative dimension in weight shape " + shape_string(shape));
    n *= d;
  }
  return n;
}

// One backend tensor from checkpoint tensors stacked along dim 0 (a single one for most).
// Generated weights are made where the backend keeps them when it can (no host copy of an
// 8B model's 32 GB of floats); otherwise they are read on the host and uploaded.
struct Part {
  std::string name;
  std::vector<int64_t> shape;
};

Buffer load_stacked(const WeightSource& source, Backend& backend, const std::vector<Part>& parts) {
  std::vector<uint64_t> keys(parts.size());
  float low = 0.0f, high = 0.0f;
  // An empty fill asks whether the backend can make the values at all.
  bool generated = backend.fill_uniform(nullptr, 0, 0, 0.0f, 0.0f);
  int64_t total = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    generated = generated && source.uniform_stream(parts[i].name, keys[i], low, high);
    total += numel_of(parts[i].shape);
  }
  if (generated) {
    const size_t element = dtype_size(backend.compute_dtype());
    Buffer buffer = backend.allocate(static_cast<size_t>(total) * element);
    int64_t offset = 0;
    for (size_t i = 0; i < parts.size() && generated; ++i) {
      const int64_t n = numel_of(parts[i].shape);
      generated = backend.fill_uniform(static_cast<char*>(buffer.data()) + offset * element, n, keys[i], low, high);
      offset += n;
    }
    if (generated) return buffer;
  }
  std::vector<HostTensor> hosts;
  for (const Part& part : parts) hosts.push_back(source.read(part.name, part.shape));
  return backend.upload(hosts.size() == 1 ? hosts[0] : concat_rows(hosts));
}

}  // namespace

int64_t count_weight_elements(const ModelConfig& c) {
  const int64_t hidden = c.hidden_size;
  const int64_t q_size = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_size = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  int64_t per_layer = 2 * hidden                                    // input and post norms
                      + (q_size + 2 * kv_size) * hidden             // qkv
                      + hidden * q_size                             // o_proj
                      + 3 * static_cast<int64_t>(c.intermediate_size) * hidden;  // gate, up, down
  if (c.qkv_bias) per_layer += q_size + 2 * kv_size;
  if (c.qk_norm) per_layer += 2 * static_cast<int64_t>(c.head_dim);
  const int64_t table = static_cast<int64_t>(c.vocab_size) * hidden;
  return per_layer * c.num_layers + hidden + table * (c.tie_word_embeddings ? 1 : 2);
}

ModelWeights load_weights(const ModelConfig& c, const WeightSource& source, Backend& backend) {
  ModelWeights w;
  auto load = [&](const std::vector<Part>& parts) {
    Buffer buffer = load_stacked(source, backend, parts);
    w.bytes += static_cast<int64_t>(buffer.bytes());
    return buffer;
  };
  const int64_t hidden = c.hidden_size;
  const int64_t q_size = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_size = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;

  w.embed = load({{"model.embed_tokens.weight", {c.vocab_size, hidden}}});
  for (int32_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights layer;
    layer.input_norm = load({{p + "input_layernorm.weight", {hidden}}});
    layer.qkv = load({{p + "self_attn.q_proj.weight", {q_size, hidden}},
                      {p + "self_attn.k_proj.weight", {kv_size, hidden}},
                      {p + "self_attn.v_proj.weight", {kv_size, hidden}}});
    if (c.qkv_bias) {
      layer.qkv_bias = load({{p + "self_attn.q_proj.bias", {q_size}},
                             {p + "self_attn.k_proj.bias", {kv_size}},
                             {p + "self_attn.v_proj.bias", {kv_size}}});
    }
    if (c.qk_norm) {
      layer.q_norm = load({{p + "self_attn.q_norm.weight", {c.head_dim}}});
      layer.k_norm = load({{p + "self_attn.k_norm.weight", {c.head_dim}}});
    }
    layer.o_proj = load({{p + "self_attn.o_proj.weight", {hidden, q_size}}});
    layer.post_norm = load({{p + "post_attention_layernorm.weight", {hidden}}});
    layer.gate_up = load({{p + "mlp.gate_proj.weight", {c.intermediate_size, hidden}},
                          {p + "mlp.up_proj.weight", {c.intermediate_size, hidden}}});
    layer.down = load({{p + "mlp.down_proj.weight", {hidden, c.intermediate_size}}});
    w.layers.push_back(std::move(layer));
  }
  w.final_norm = load({{"model.norm.weight", {hidden}}});
  // Tied checkpoints usually omit lm_head.weight; when present it is used as given.
  if (source.contains("lm_head.weight")) {
    w.lm_head = load({{"lm_head.weight", {c.vocab_size, hidden}}});
  } else if (!c.tie_word_embeddings) {
    throw InvalidArgument("tensor lm_head.weight not found in the checkpoint and tie_word_embeddings is false");
  }
  return w;
}

namespace {

// Every buffer of the weights, in one fixed order, so that two copies can be walked together.
template <typename W, typename B>
std::vector<B*> weight_buffers(W& w) {
  std::vector<B*> out = {&w.embed, &w.final_norm, &w.lm_head};
  for (auto& l : w.layers) {
    for (B* b : {&l.input_norm, &l.qkv, &l.qkv_bias, &l.q_norm, &l.k_norm, &l.o_proj, &l.post_norm, &l.gate_up,
                 &l.down}) {
      out.push_back(b);
    }
  }
  return out;
}

}  // namespace

ModelWeights copy_weights(const ModelWeights& weights, Backend& backend, bool to_host) {
  ModelWeights out;
  out.layers.resize(weights.layers.size());
  out.bytes = weights.bytes;
  const std::vector<const Buffer*> src = weight_buffers<const ModelWeights, const Buffer>(weights);
  const std::vector<Buffer*> dst = weight_buffers<ModelWeights, Buffer>(out);
  for (size_t i = 0; i < src.size(); ++i) {
    const size_t n = src[i]->bytes();
    if (src[i]->data() == nullptr) continue;  // an absent tensor (no bias, tied lm_head) stays absent
    if (to_host) {
      *dst[i] = backend.allocate_host(n);
      backend.copy_to_host(dst[i]->data(), src[i]->data(), n);
    } else {
      *dst[i] = backend.allocate(n);
      backend.copy_to_device(dst[i]->data(), src[i]->data(), n);
    }
  }
  backend.synchronize();
  return out;
}

}  // namespace octavo
