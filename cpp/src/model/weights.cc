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

}  // namespace

ModelWeights load_weights(const ModelConfig& c, const WeightSource& source, Backend& backend) {
  ModelWeights w;
  auto upload = [&](const HostTensor& host) {
    Buffer buffer = backend.upload(host);
    w.bytes += static_cast<int64_t>(buffer.bytes());
    return buffer;
  };
  const int64_t hidden = c.hidden_size;
  const int64_t q_size = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_size = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;

  w.embed = upload(source.read("model.embed_tokens.weight", {c.vocab_size, hidden}));
  for (int32_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights layer;
    layer.input_norm = upload(source.read(p + "input_layernorm.weight", {hidden}));
    layer.qkv = upload(concat_rows({source.read(p + "self_attn.q_proj.weight", {q_size, hidden}),
                                    source.read(p + "self_attn.k_proj.weight", {kv_size, hidden}),
                                    source.read(p + "self_attn.v_proj.weight", {kv_size, hidden})}));
    if (c.qkv_bias) {
      layer.qkv_bias = upload(concat_rows({source.read(p + "self_attn.q_proj.bias", {q_size}),
                                           source.read(p + "self_attn.k_proj.bias", {kv_size}),
                                           source.read(p + "self_attn.v_proj.bias", {kv_size})}));
    }
    if (c.qk_norm) {
      layer.q_norm = upload(source.read(p + "self_attn.q_norm.weight", {c.head_dim}));
      layer.k_norm = upload(source.read(p + "self_attn.k_norm.weight", {c.head_dim}));
    }
    layer.o_proj = upload(source.read(p + "self_attn.o_proj.weight", {hidden, q_size}));
    layer.post_norm = upload(source.read(p + "post_attention_layernorm.weight", {hidden}));
    layer.gate_up = upload(concat_rows({source.read(p + "mlp.gate_proj.weight", {c.intermediate_size, hidden}),
                                        source.read(p + "mlp.up_proj.weight", {c.intermediate_size, hidden})}));
    layer.down = upload(source.read(p + "mlp.down_proj.weight", {hidden, c.intermediate_size}));
    w.layers.push_back(std::move(layer));
  }
  w.final_norm = upload(source.read("model.norm.weight", {hidden}));
  // Tied checkpoints usually omit lm_head.weight; when present it is used as given.
  if (source.contains("lm_head.weight")) {
    w.lm_head = upload(source.read("lm_head.weight", {c.vocab_size, hidden}));
  } else if (!c.tie_word_embeddings) {
    throw InvalidArgument("tensor lm_head.weight not found in the checkpoint and tie_word_embeddings is false");
  }
  return w;
}

}  // namespace octavo
