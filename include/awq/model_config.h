// The hyper-parameters of a decoder-only transformer, read from a Hugging Face config.json or from
// GGUF metadata. Plain struct with explicit defaults; Validate() checks that the numbers fit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace awq {

class GgufFile;

enum class RopeScalingType : uint8_t { kNone, kLinear, kLlama3, kYarn, kCount };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // Llama-3 style ("rope_type": "llama3"): frequencies below low_freq_factor are divided by
  // factor, above high_freq_factor kept, smoothly blended between.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  // YaRN ("rope_type": "yarn", Qwen2.5/Qwen3 long context): frequencies blended between
  // interpolated and extrapolated over the band [beta_slow, beta_fast] rotations, cos/sin
  // multiplied by attention_factor (0: 0.1 ln(factor) + 1, as transformers computes it).
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double attention_factor = 0.0;
  bool truncate = true;
};

// How a decoder layer attends: every layer globally, or some through a sliding window.
enum class LayerAttention : uint8_t { kFull, kSliding, kCount };

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";  // HF "architectures"[0]
  std::string model_type = "llama";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // == num_attention_heads when absent (no GQA)
  int64_t head_dim = 0;             // hidden_size / num_attention_heads when absent
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  std::string hidden_act = "silu";
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype = "float32";

  // Family-specific settings, read by the architecture's description (src/model/arch/).
  // Sliding-window attention: a query at position t sees keys t - sliding_window < j <= t on the
  // layers that layer_types marks kSliding (empty: every layer when sliding_window > 0).
  int64_t sliding_window = 0;
  std::vector<LayerAttention> layer_types;
  // RoPE base of the sliding-window layers (Gemma 3: 10000, no scaling); 0: rope_theta.
  double rope_local_theta = 0;
  // Attention scores are q.k / sqrt(query_pre_attn_scalar) (Gemma); 0: head_dim.
  double query_pre_attn_scalar = 0;
  // score = cap * tanh(score / cap) before the softmax, logits likewise (Gemma 2); 0: off.
  double attn_logit_softcapping = 0;
  double final_logit_softcapping = 0;
  // Mixture of experts (Mixtral, Qwen2-MoE, Qwen3-MoE; 0 experts: a dense model). A sparse
  // layer's MLP is a router [num_experts, D] choosing num_experts_per_tok SiLU-gated experts of
  // width moe_intermediate_size per token by softmax, their outputs summed with the top-k
  // probabilities, renormalised to sum 1 when norm_topk_prob (Mixtral always). Qwen2-MoE adds a
  // shared expert of width shared_expert_intermediate_size on every token, scaled by
  // sigmoid(shared_expert_gate x). Layers listed in dense_mlp_layers (Qwen's mlp_only_layers and
  // decoder_sparse_step) keep the dense MLP of intermediate_size.
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  bool norm_topk_prob = false;
  int64_t shared_expert_intermediate_size = 0;
  std::vector<int64_t> dense_mlp_layers;
  // Recurrent families (Mamba, RWKV: no attention, the num_*_heads and head_dim above stay 0;
  // src/model/recurrent.h). Mamba: the scan's state_size N, the causal depthwise convolution's
  // conv_kernel K, dt_proj's input width time_step_rank, biases on in_proj/out_proj (use_bias)
  // and on the convolution (use_conv_bias); intermediate_size is its d_inner = expand *
  // hidden_size and rms_norm_eps its layer_norm_epsilon. RWKV: the time-mix width
  // attention_hidden_size, and rescale_every (transformers' inference divides layer l's output
  // linears by 2^(l / rescale_every) and halves the hidden state after every rescale_every-th
  // layer; 0: off); intermediate_size is the channel-mix width, rms_norm_eps the LayerNorms'
  // epsilon.
  int64_t state_size = 0;
  int64_t conv_kernel = 0;
  int64_t time_step_rank = 0;
  bool use_bias = false;
  bool use_conv_bias = false;
  int64_t attention_hidden_size = 0;
  int64_t rescale_every = 0;
  // The model's config.json as read (empty for GGUF): written back, with quantization_config
  // added, so that keys this project does not model survive a quantization.
  std::string source_json;

  // True when layer `l` attends through the sliding window.
  bool IsSlidingLayer(int64_t l) const {
    if (sliding_window <= 0) return false;
    if (layer_types.empty()) return true;
    return layer_types[static_cast<size_t>(l)] == LayerAttention::kSliding;
  }

  // True when layer `l`'s MLP is a mixture of experts.
  bool IsMoeLayer(int64_t l) const {
    if (num_experts <= 0) return false;
    for (int64_t d : dense_mlp_layers) {
      if (d == l) return false;
    }
    return true;
  }

  // Throws awq::Error naming `source` and the offending field and value: non-positive sizes,
  // hidden_size not divisible into heads, num_attention_heads not a multiple of
  // num_key_value_heads, unsupported hidden_act or model_type.
  void Validate(const std::string& source) const;
};

// Parses a Hugging Face config.json of a supported family (SupportedModelTypes() in
// src/model/arch.h: llama, mistral, qwen2, qwen3, phi3, gemma3_text). Throws awq::Error naming
// the file, the key and the value.
ModelConfig LoadHfConfig(const std::string& path);
// Same from the text of a config.json; `source` names it in errors.
ModelConfig ParseHfConfig(const std::string& json_text, const std::string& source);
// Serialises to config.json text as transformers writes it (keys sorted, 2-space indent).
std::string HfConfigToJson(const ModelConfig& config);

// Reads the <arch>.* keys of a GGUF file (general.architecture names the family).
ModelConfig ConfigFromGguf(const GgufFile& gguf);

}  // namespace awq
