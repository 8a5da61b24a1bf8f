// RWKV-4 (transformers' RwkvForCausalLM, RWKV/rwkv-4-*): LayerNorm pre-norm blocks of a time-mix
// (token shift and the WKV recurrence) and a channel-mix (token shift, squared ReLU), an extra
// LayerNorm on the embeddings in layer 0; the shift rows and WKV sums replace the KV cache
// (src/model/recurrent.cc).
#include <algorithm>

#include "awq/error.h"
#include "model/arch.h"
#include "model/recurrent.h"

namespace awq {

namespace {

void ReadRwkv(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  const auto fail = [&](const char* key, const std::string& detail) {
    throw Error(source + ": " + key + ": " + detail);
  };
  ReadRecurrentCommon(root, source, c);
  // RwkvConfig's defaults for a missing (or null) key.
  c.attention_hidden_size = arch_keys::Int(root, source, "attention_hidden_size", c.hidden_size);
  c.intermediate_size = arch_keys::Int(root, source, "intermediate_size", 4 * c.hidden_size);
  c.rms_norm_eps = arch_keys::Number(root, source, "layer_norm_epsilon", 1e-5);
  // transformers: 0 or a negative number turns the rescaling off.
  c.rescale_every = std::max<int64_t>(0, arch_keys::Int(root, source, "rescale_every", 6));
  c.max_position_embeddings = arch_keys::Int(root, source, "context_length", 1024);
  if (c.attention_hidden_size <= 0) {
    fail("attention_hidden_size",
         "must be positive, got " + std::to_string(c.attention_hidden_size));
  }
  if (!(c.rms_norm_eps > 0)) {
    fail("layer_norm_epsilon",
         "must be a positive number, got " + root.at("layer_norm_epsilon").dump());
  }
}

std::vector<RecurrentTensor> RwkvTensors(const ModelConfig& c, int64_t layer) {
  const int64_t d = c.hidden_size, a = c.attention_hidden_size, i = c.intermediate_size;
  std::vector<RecurrentTensor> t;
  if (layer == 0) t = {{"pre_ln.weight", {d}}, {"pre_ln.bias", {d}}};
  const std::vector<RecurrentTensor> rest = {
      {"ln1.weight", {d}},
      {"ln1.bias", {d}},
      {"ln2.weight", {d}},
      {"ln2.bias", {d}},
      {"attention.time_decay", {a}},
      {"attention.time_first", {a}},
      {"attention.time_mix_key", {1, 1, d}},
      {"attention.time_mix_value", {1, 1, d}},
      {"attention.time_mix_receptance", {1, 1, d}},
      {"attention.key.weight", {a, d}},
      {"attention.value.weight", {a, d}},
      {"attention.receptance.weight", {a, d}},
      {"attention.output.weight", {d, a}},
      {"feed_forward.time_mix_key", {1, 1, d}},
      {"feed_forward.time_mix_receptance", {1, 1, d}},
      {"feed_forward.key.weight", {i, d}},
      {"feed_forward.receptance.weight", {d, d}},
      {"feed_forward.value.weight", {d, i}},
  };
  t.insert(t.end(), rest.begin(), rest.end());
  return t;
}

// A function-local static: the registry may be read during other files' static initialisation.
const RecurrentSpec& RwkvSpec() {
  static const RecurrentSpec s = {
      .kind = RecurrentKind::kRwkv,
      .layer_prefix = "rwkv.blocks.",
      .embed = "rwkv.embeddings.weight",
      .final_norm = "rwkv.ln_out",
      .lm_head = "head.weight",
      .final_norm_bias = true,
      .linears = {{"attention.key", "ln1"},
                  {"attention.value", "ln1"},
                  {"attention.receptance", "ln1"},
                  {"attention.output"},
                  {"feed_forward.key", "ln2"},
                  {"feed_forward.receptance", "ln2"},
                  {"feed_forward.value"}},
      .tensors = RwkvTensors,
  };
  return s;
}

}  // namespace

const Architecture& RwkvArchitecture() {
  static const Architecture a = [] {
    Architecture a;
    a.model_type = "rwkv";
    a.hf_class = "RwkvForCausalLM";
    a.gguf_archs = {};  // llama.cpp's rwkv GGUF layout is not read
    a.read_hf = ReadRwkv;
    a.recurrent = &RwkvSpec();
    return a;
  }();
  return a;
}

}  // namespace awq
