#include "model/weights.h"

#include <string>

#include "core/tensor.h"
#include "octavo/errors.h"

namespace octavo {

namespace {

// Reads a tensor into host floats, checking its shape.
HostTensor read(const SafetensorsReader& reader, const std::string& name,
                const std::vector<int64_t>& shape) {
  const TensorInfo& info = reader.get(name);
  if (info.shape != shape) {
    throw InvalidArgument("tensor " + name + " has shape " + shape_string(info.shape) +
                          ", the config calls for " + shape_string(shape));
  }
  HostTensor host;
  host.shape = shape;
  host.values.resize(static_cast<size_t>(info.numel()));
  convert_to_float(info.dtype, info.data, host.values.data(), host.values.size());
  return host;
}

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

}  // namespace

ModelWeights load_weights(const ModelConfig& c, const SafetensorsReader& reader, Backend& backend) {
  ModelWeights w;
  auto upload = [&](const HostTensor& host) {
    Buffer buffer = backend.upload(host);
    w.bytes += static_cast<int64_t>(buffer.bytes());
    return buffer;
  };
  const int64_t hidden = c.hidden_size;
  const int64_t q_size = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_size = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;

  w.embed = upload(read(reader, "model.embed_tokens.weight", {c.vocab_size, hidden}));
  for (int32_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights layer;
    layer.input_norm = upload(read(reader, p + "input_layernorm.weight", {hidden}));
    layer.qkv = upload(concat_rows({read(reader, p + "self_attn.q_proj.weight", {q_size, hidden}),
                                    read(reader, p + "self_attn.k_proj.weight", {kv_size, hidden}),
                                    read(reader, p + "self_attn.v_proj.weight", {kv_size, hidden})}));
    if (c.qkv_bias) {
      layer.qkv_bias = upload(concat_rows({read(reader, p + "self_attn.q_proj.bias", {q_size}),
                                           read(reader, p + "self_attn.k_proj.bias", {kv_size}),
                                           read(reader, p + "self_attn.v_proj.bias", {kv_size})}));
    }
    if (c.qk_norm) {
      layer.q_norm = upload(read(reader, p + "self_attn.q_norm.weight", {c.head_dim}));
      layer.k_norm = upload(read(reader, p + "self_attn.k_norm.weight", {c.head_dim}));
    }
    layer.o_proj = upload(read(reader, p + "self_attn.o_proj.weight", {hidden, q_size}));
    layer.post_norm = upload(read(reader, p + "post_attention_layernorm.weight", {hidden}));
    layer.gate_up = upload(concat_rows({read(reader, p + "mlp.gate_proj.weight", {c.intermediate_size, hidden}),
                                        read(reader, p + "mlp.up_proj.weight", {c.intermediate_size, hidden})}));
    layer.down = upload(read(reader, p + "mlp.down_proj.weight", {hidden, c.intermediate_size}));
    w.layers.push_back(std::move(layer));
  }
  w.final_norm = upload(read(reader, "model.norm.weight", {hidden}));
  // Tied checkpoints usually omit lm_head.weight; when present it is used as given.
  if (reader.contains("lm_head.weight")) {
    w.lm_head = upload(read(reader, "lm_head.weight", {c.vocab_size, hidden}));
  } else if (!c.tie_word_embeddings) {
    throw InvalidArgument("tensor lm_head.weight not found in the checkpoint and tie_word_embeddings is false");
  }
  return w;
}

}  // namespace octavo
