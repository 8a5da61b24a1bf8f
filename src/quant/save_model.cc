// Saving a quantized in-memory model as a Hugging Face folder in the AutoAWQ layout.
#include <cstring>
#include <string>

#include "awq/awq_checkpoint.h"
#include "awq/model.h"
#include "awq/quantize.h"

namespace awq {

void SaveQuantizedModel(const Model& model, const QuantizeResult& r, const QuantConfig& qc,
                        const Tokenizer* tokenizer, const std::string& dir,
                        uint64_t max_shard_bytes, bool overwrite) {
  AwqCheckpointWriter w;
  w.method = QuantMethodName(r.method);
  const ModelWeights& mw = model.weights();
  const ModelConfig& c = model.config();
  w.AddTensor("model.embed_tokens.weight", mw.embed);
  w.AddTensor("model.norm.weight", mw.final_norm);
  if (!c.tie_word_embeddings) w.AddTensor("lm_head.weight", mw.lm_head);
  const int64_t d = c.hidden_size, hd = c.head_dim, qd = c.num_attention_heads * hd,
                kvd = c.num_key_value_heads * hd, inter = c.intermediate_size;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = mw.layers[static_cast<size_t>(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.AddTensor(p + "input_layernorm.weight", lw.attn_norm);
    w.AddTensor(p + "post_attention_layernorm.weight", lw.ffn_norm);
    // Row ranges of the fused tensors, for linears the config left in full precision.
    struct Part {
      const char* name;
      const Tensor* t;
      int64_t row0, rows, in;
    };
    const Part parts[] = {{"self_attn.q_proj", &lw.wqkv, 0, qd, d},
                          {"self_attn.k_proj", &lw.wqkv, qd, kvd, d},
                          {"self_attn.v_proj", &lw.wqkv, qd + kvd, kvd, d},
                          {"self_attn.o_proj", &lw.wo, 0, d, qd},
                          {"mlp.gate_proj", &lw.w_gate_up, 0, inter, d},
                          {"mlp.up_proj", &lw.w_gate_up, inter, inter, d},
                          {"mlp.down_proj", &lw.w_down, 0, d, inter}};
    for (const Part& part : parts) {
      const std::string name = p + part.name;
      auto it = r.linears.find(name);
      if (it != r.linears.end()) {
        w.AddQuantized(name, it->second);
      } else {
        Tensor t(DType::kF32, {part.rows, part.in});
        std::memcpy(t.data<float>(), part.t->data<float>() + part.row0 * part.in, t.nbytes());
        w.AddTensor(name + ".weight", std::move(t));
      }
    }
    if (!lw.bqkv.empty()) {
      const float* b = lw.bqkv.data<float>();
      const std::pair<const char*, std::pair<int64_t, int64_t>> biases[] = {
          {"self_attn.q_proj.bias", {0, qd}},
          {"self_attn.k_proj.bias", {qd, kvd}},
          {"self_attn.v_proj.bias", {qd + kvd, kvd}}};
      for (const auto& [name, range] : biases) {
        Tensor t(DType::kF32, {range.second});
        std::memcpy(t.data<float>(), b + range.first, t.nbytes());
        w.AddTensor(p + name, std::move(t));
      }
    }
  }
  w.Write(dir, c, qc, tokenizer, max_shard_bytes, overwrite);
}

}  // namespace awq
