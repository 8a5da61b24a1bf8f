// ModelConfig from GGUF metadata (<arch>.* keys, as llama.cpp's converter writes them).
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>

#include "awq/gguf.h"
#include "awq/model_config.h"
#include "model/arch.h"

namespace awq {

namespace {
// GGUF stores these as float32; the shortest decimal that reads back as the same float (1e-06,
// not 9.99999997e-07) is what the model's config.json said, and what a written config.json
// should say again. The kernels use the float either way.
double ShortestFloat(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), static_cast<float>(v));
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}
}  // namespace

namespace {

std::string Num(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

// The attention of layer l as the forward runs it: the window when it binds within the context,
// else 0 (a window as long as the context changes nothing).
int64_t EffectiveWindow(const ModelConfig& c, int64_t l) {
  if (!c.IsSlidingLayer(l) || c.sliding_window >= c.max_position_embeddings) return 0;
  return c.sliding_window;
}

// The first setting in which `back` (read from the GGUF form) computes another model than `c`,
// as "key: value (GGUF holds: other)"; empty when they agree.
std::string ConfigDifference(const ModelConfig& c, const ModelConfig& back) {
  const auto differs = [](const char* key, const std::string& a, const std::string& b) {
    return a == b ? std::string() : std::string(key) + " " + a + " (GGUF holds " + b + ")";
  };
  const auto f32 = [](double v) { return Num(static_cast<float>(v)); };
  const double q = c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : c.head_dim;
  const double q_back = back.query_pre_attn_scalar > 0 ? back.query_pre_attn_scalar : back.head_dim;
  const double local = c.rope_local_theta > 0 ? c.rope_local_theta : c.rope_theta;
  const double local_back = back.rope_local_theta > 0 ? back.rope_local_theta : back.rope_theta;
  const bool any_sliding = [&] {
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      if (EffectiveWindow(c, l) > 0) return true;
    }
    return false;
  }();
  std::string sparse, sparse_back;  // which layers are mixtures of experts
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    sparse += (l ? "," : "") + Num(c.IsMoeLayer(l));
    sparse_back += (l ? "," : "") + Num(back.IsMoeLayer(l));
  }
  std::string window, window_back;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    window += (l ? "," : "") + std::to_string(EffectiveWindow(c, l));
    window_back += (l ? "," : "") + std::to_string(EffectiveWindow(back, l));
  }
  const std::string checks[] = {
      differs("hidden_size", Num(c.hidden_size), Num(back.hidden_size)),
      differs("intermediate_size", Num(c.intermediate_size), Num(back.intermediate_size)),
      differs("num_hidden_layers", Num(c.num_hidden_layers), Num(back.num_hidden_layers)),
      differs("num_attention_heads", Num(c.num_attention_heads), Num(back.num_attention_heads)),
      differs("num_key_value_heads", Num(c.num_key_value_heads), Num(back.num_key_value_heads)),
      differs("head_dim", Num(c.head_dim), Num(back.head_dim)),
      differs("vocab_size", Num(c.vocab_size), Num(back.vocab_size)),
      differs("rms_norm_eps", f32(c.rms_norm_eps), f32(back.rms_norm_eps)),
      differs("rope_theta", f32(c.rope_theta), f32(back.rope_theta)),
      differs("rope_scaling.rope_type", Num(static_cast<int>(c.rope_scaling.type)),
              Num(static_cast<int>(back.rope_scaling.type))),
      differs("rope_scaling.factor", f32(c.rope_scaling.factor), f32(back.rope_scaling.factor)),
      differs("tie_word_embeddings", Num(c.tie_word_embeddings), Num(back.tie_word_embeddings)),
      differs("attention_bias", Num(c.attention_bias), Num(back.attention_bias)),
      differs("hidden_act", c.hidden_act, back.hidden_act),
      differs("sliding_window (per layer)", window, window_back),
      any_sliding ? differs("rope_local_base_freq", f32(local), f32(local_back)) : std::string(),
      differs("query_pre_attn_scalar", Num(q), Num(q_back)),
      differs("attn_logit_softcapping", Num(c.attn_logit_softcapping),
              Num(back.attn_logit_softcapping)),
      differs("final_logit_softcapping", Num(c.final_logit_softcapping),
              Num(back.final_logit_softcapping)),
      differs("num_experts", Num(c.num_experts), Num(back.num_experts)),
      differs("num_experts_per_tok", Num(c.num_experts_per_tok), Num(back.num_experts_per_tok)),
      differs("moe_intermediate_size", Num(c.moe_intermediate_size),
              Num(back.moe_intermediate_size)),
      differs("shared_expert_intermediate_size", Num(c.shared_expert_intermediate_size),
              Num(back.shared_expert_intermediate_size)),
      c.num_experts > 0 ? differs("norm_topk_prob", Num(c.norm_topk_prob), Num(back.norm_topk_prob))
                        : std::string(),
      differs("mixture-of-experts layers (mlp_only_layers, decoder_sparse_step)", sparse,
              sparse_back),
  };
  for (const std::string& d : checks) {
    if (!d.empty()) return d;
  }
  return "";
}

const char* RopeTypeName(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::kNone:
      return "none";
    case RopeScalingType::kLinear:
      return "linear";
    case RopeScalingType::kLlama3:
      return "llama3";
    case RopeScalingType::kYarn:
      return "yarn";
    default:
      return "?";
  }
}

}  // namespace

GgufMetadata GgufConfigMetadata(const ModelConfig& c, const std::string& source) {
  const Architecture& family = ArchitectureOf(c);
  if (family.gguf_archs.empty() && family.gguf_write_arch == nullptr) {
    throw Error(source + ": model_type '" + c.model_type + "' has no GGUF architecture");
  }
  if (c.rope_scaling.type != RopeScalingType::kNone &&
      c.rope_scaling.type != RopeScalingType::kLinear) {
    throw Error(source + ": rope_scaling type '" + RopeTypeName(c.rope_scaling.type) +
                "' cannot be written to GGUF (awq.cpp reads back none and linear only)");
  }
  const std::string arch =
      family.gguf_write_arch != nullptr ? family.gguf_write_arch : family.gguf_archs[0];
  const std::string p = arch + ".";
  const auto u32 = [](int64_t v) { return GgufU32(static_cast<uint32_t>(v)); };
  GgufMetadata kv;
  kv.emplace_back("general.architecture", GgufString(arch));
  kv.emplace_back(p + "context_length", u32(c.max_position_embeddings));
  kv.emplace_back(p + "embedding_length", u32(c.hidden_size));
  kv.emplace_back(p + "block_count", u32(c.num_hidden_layers));
  kv.emplace_back(p + "feed_forward_length", u32(c.intermediate_size));
  kv.emplace_back(p + "attention.head_count", u32(c.num_attention_heads));
  kv.emplace_back(p + "attention.head_count_kv", u32(c.num_key_value_heads));
  kv.emplace_back(p + "rope.freq_base", GgufF32(static_cast<float>(c.rope_theta)));
  kv.emplace_back(p + "attention.layer_norm_rms_epsilon",
                  GgufF32(static_cast<float>(c.rms_norm_eps)));
  kv.emplace_back(p + "attention.key_length", u32(c.head_dim));
  kv.emplace_back(p + "attention.value_length", u32(c.head_dim));
  kv.emplace_back(p + "rope.dimension_count", u32(c.head_dim));
  kv.emplace_back(p + "vocab_size", u32(c.vocab_size));
  if (c.rope_scaling.type == RopeScalingType::kLinear) {
    kv.emplace_back(p + "rope.scaling.type", GgufString("linear"));
    kv.emplace_back(p + "rope.scaling.factor", GgufF32(static_cast<float>(c.rope_scaling.factor)));
  }
  if (family.write_gguf != nullptr) family.write_gguf(c, p, kv);

  // Read back as awq.cpp (and llama.cpp) will: the tensors whose presence the reader asks for.
  GgufWriter w;
  for (const auto& [key, value] : kv) w.AddMetadata(key, value);
  const std::string f32(4, '\0');
  if (!c.tie_word_embeddings) w.AddTensor("output.weight", GgmlType::kF32, {1}, f32);
  if (c.attention_bias) w.AddTensor("blk.0.attn_q.bias", GgmlType::kF32, {1}, f32);
  w.AddTensor("token_embd.weight", GgmlType::kF32, {1}, f32);
  const std::string image = w.Serialize();
  ModelConfig back = ConfigFromGguf(GgufFile::Parse(reinterpret_cast<const uint8_t*>(image.data()),
                                                    image.size(), source + " (as GGUF)"));
  const std::string diff = ConfigDifference(c, back);
  if (!diff.empty()) {
    throw Error(source + ": " + diff + ": llama.cpp's '" + arch +
                "' GGUF metadata cannot hold this model's setting, so the file would compute "
                "another model");
  }
  return kv;
}

ModelConfig ConfigFromGguf(const GgufFile& gguf) {
  ModelConfig c;
  const std::string arch = gguf.GetString("general.architecture");
  const Architecture* family = FindGgufArchitecture(arch);
  if (family == nullptr) {
    throw Error(gguf.path() + ": general.architecture is '" + arch +
                "'; supported: " + SupportedGgufArchitectures());
  }
  const std::string p = arch + ".";
  // llama.cpp writes Mixtral as "llama" with experts (blk.N.ffn_gate_exps).
  if (gguf.GetUint(p + "expert_count", 0) > 0) {
    if (family == &LlamaArchitecture()) family = &MixtralArchitecture();
    if (*family->moe.router == '\0') {
      throw Error(gguf.path() + ": " + p + "expert_count is " +
                  std::to_string(gguf.GetUint(p + "expert_count")) + ", but awq.cpp's '" + arch +
                  "' has no mixture of experts");
    }
  }
  c.model_type = family->model_type;
  c.architecture = family->hf_class;
  c.hidden_size = static_cast<int64_t>(gguf.GetUint(p + "embedding_length"));
  c.intermediate_size = static_cast<int64_t>(gguf.GetUint(p + "feed_forward_length"));
  c.num_hidden_layers = static_cast<int64_t>(gguf.GetUint(p + "block_count"));
  c.num_attention_heads = static_cast<int64_t>(gguf.GetUint(p + "attention.head_count"));
  c.num_key_value_heads = static_cast<int64_t>(
      gguf.GetUint(p + "attention.head_count_kv", static_cast<uint64_t>(c.num_attention_heads)));
  c.max_position_embeddings = static_cast<int64_t>(gguf.GetUint(p + "context_length", 2048));
  c.rms_norm_eps = ShortestFloat(gguf.GetFloat(p + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_theta = ShortestFloat(gguf.GetFloat(p + "rope.freq_base", 10000.0));
  if (c.num_attention_heads > 0) {
    c.head_dim = static_cast<int64_t>(gguf.GetUint(
        p + "attention.key_length", static_cast<uint64_t>(c.hidden_size / c.num_attention_heads)));
  }
  const std::string scaling = gguf.GetString(p + "rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope_scaling.type = RopeScalingType::kLinear;
    c.rope_scaling.factor = gguf.GetFloat(p + "rope.scaling.factor");
  } else if (scaling != "none") {
    throw Error(gguf.path() + ": metadata key " + p + "rope.scaling.type is '" + scaling +
                "'; supported: none, linear");
  }
  // Llama-3.1 GGUFs keep the llama3 scaling baked into a rope_freqs tensor rather than in keys.
  if (gguf.FindTensor("rope_freqs.weight") != nullptr) {
    throw Error(gguf.path() +
                ": tensor rope_freqs.weight (Llama-3.1 rope scaling in GGUF) is "
                "not supported; load the Hugging Face folder instead");
  }
  if (gguf.Has(p + "vocab_size")) {
    c.vocab_size = static_cast<int64_t>(gguf.GetUint(p + "vocab_size"));
  } else if (gguf.Has("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(gguf.Find("tokenizer.ggml.tokens")->array.size());
  }
  c.tie_word_embeddings = gguf.FindTensor("output.weight") == nullptr;
  c.attention_bias = gguf.FindTensor("blk.0.attn_q.bias") != nullptr;
  if (family->read_gguf != nullptr) family->read_gguf(gguf, p, c);
  c.rms_norm_eps = ShortestFloat(c.rms_norm_eps);
  c.bos_token_id = static_cast<int64_t>(gguf.GetInt("tokenizer.ggml.bos_token_id", -1));
  const int64_t eos = gguf.GetInt("tokenizer.ggml.eos_token_id", -1);
  if (eos >= 0) c.eos_token_ids.push_back(eos);
  c.Validate(gguf.path());
  return c;
}

}  // namespace awq
