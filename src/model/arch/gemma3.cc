// Gemma 3 (text): embeddings scaled by sqrt(hidden), four (1 + w) RMSNorms per block (before and
// after attention and MLP), q/k norms, GELU-tanh gated MLP, sliding-window layers (five local to
// one global by default) whose RoPE has its own base, query pre-scaling, tied embeddings.
#include <cmath>

#include "awq/error.h"
#include "awq/gguf.h"
#include "model/arch.h"

namespace awq {

namespace {

// transformers' default when a config has neither layer_types nor sliding_window_pattern.
constexpr int64_t kDefaultSlidingPattern = 6;
constexpr double kDefaultLocalRopeBase = 10000.0;

void SetPattern(int64_t pattern, ModelConfig& c) {
  c.layer_types.assign(static_cast<size_t>(c.num_hidden_layers), LayerAttention::kSliding);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    // Every pattern-th layer attends globally.
    if (pattern > 0 && (l + 1) % pattern == 0) {
      c.layer_types[static_cast<size_t>(l)] = LayerAttention::kFull;
    }
  }
}

void ReadGemma3(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  if (arch_keys::Has(root, "hidden_activation")) {
    c.hidden_act = root.at("hidden_activation").get<std::string>();
  } else if (!arch_keys::Has(root, "hidden_act")) {
    c.hidden_act = "gelu_pytorch_tanh";
  }
  if (!arch_keys::Has(root, "tie_word_embeddings")) c.tie_word_embeddings = true;
  c.query_pre_attn_scalar =
      arch_keys::Number(root, source, "query_pre_attn_scalar", static_cast<double>(c.head_dim));
  c.sliding_window = arch_keys::Int(root, source, "sliding_window", 4096);
  // transformers 4 spells the local base rope_local_base_freq; 5 puts it in rope_parameters.
  if (arch_keys::Has(root, "rope_local_base_freq") || c.rope_local_theta <= 0) {
    c.rope_local_theta =
        arch_keys::Number(root, source, "rope_local_base_freq", kDefaultLocalRopeBase);
  }
  c.attn_logit_softcapping = arch_keys::Number(root, source, "attn_logit_softcapping", 0);
  c.final_logit_softcapping = arch_keys::Number(root, source, "final_logit_softcapping", 0);
  if (arch_keys::Has(root, "layer_types")) {
    arch_keys::ReadLayerTypes(root, source, c);
  } else {
    SetPattern(arch_keys::Int(root, source, "sliding_window_pattern", kDefaultSlidingPattern), c);
  }
}

void ReadGemma3Gguf(const GgufFile& gguf, const std::string& p, ModelConfig& c) {
  c.hidden_act = "gelu_pytorch_tanh";
  c.sliding_window = static_cast<int64_t>(gguf.GetUint(p + "attention.sliding_window", 4096));
  // llama.cpp hard-codes these for gemma3: local layers use base 10000 and every sixth layer is
  // global; the 27B model pre-scales queries by hidden/heads, the others by head_dim.
  c.rope_local_theta = kDefaultLocalRopeBase;
  SetPattern(kDefaultSlidingPattern, c);
  c.query_pre_attn_scalar = c.num_hidden_layers == 62
                                ? static_cast<double>(c.hidden_size / c.num_attention_heads)
                                : static_cast<double>(c.head_dim);
  c.rms_norm_eps = gguf.GetFloat(p + "attention.layer_norm_rms_epsilon", 1e-6);
}

void WriteGemma3Gguf(const ModelConfig& c, const std::string& p, GgufMetadata& kv) {
  kv.emplace_back(p + "attention.sliding_window", GgufU32(static_cast<uint32_t>(c.sliding_window)));
}

void WriteGemma3(const ModelConfig& c, nlohmann::json& j) {
  j.erase("hidden_act");
  j.erase("mlp_bias");
  j.erase("pretraining_tp");
  j["hidden_activation"] = c.hidden_act;
  // transformers declares it an int and refuses 256.0.
  const double q = c.query_pre_attn_scalar;
  j["query_pre_attn_scalar"] =
      q == std::floor(q) ? nlohmann::json(static_cast<int64_t>(q)) : nlohmann::json(q);
  j["sliding_window"] = c.sliding_window;
  j["rope_local_base_freq"] = c.rope_local_theta;
  j["attn_logit_softcapping"] =
      c.attn_logit_softcapping > 0 ? nlohmann::json(c.attn_logit_softcapping) : nullptr;
  j["final_logit_softcapping"] =
      c.final_logit_softcapping > 0 ? nlohmann::json(c.final_logit_softcapping) : nullptr;
  arch_keys::WriteLayerTypes(c, j);
}

}  // namespace

const Architecture& Gemma3Architecture() {
  static const Architecture a = [] {
    Architecture a;
    a.model_type = "gemma3_text";
    a.hf_class = "Gemma3ForCausalLM";
    a.gguf_archs = {"gemma3"};
    a.recipe.norm = NormKind::kRmsOnePlus;
    a.recipe.activation = Activation::kGeluTanh;
    a.recipe.qk_norm = true;
    a.recipe.post_norms = true;
    a.recipe.scale_embedding = true;
    a.norms.attn_in = "input_layernorm";
    a.norms.mlp_in = "pre_feedforward_layernorm";
    a.norms.attn_out = "post_attention_layernorm";
    a.norms.mlp_out = "post_feedforward_layernorm";
    a.norms.q = "self_attn.q_norm";
    a.norms.k = "self_attn.k_norm";
    a.linears = kSeparateLinears;
    // AutoAWQ's gemma2.py (Gemma 3's text block is the same): the MLP group's scale goes into
    // pre_feedforward_layernorm, folded through its (1 + w) form.
    a.awq_groups = kStandardAwqGroups;
    a.gguf_norm_plus_one = true;
    a.read_hf = ReadGemma3;
    a.read_gguf = ReadGemma3Gguf;
    a.write_hf = WriteGemma3;
    a.write_gguf = WriteGemma3Gguf;
    return a;
  }();
  return a;
}

}  // namespace awq
