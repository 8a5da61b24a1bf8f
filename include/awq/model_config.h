// The hyper-parameters of a Llama-family decoder, read from a Hugging Face config.json or from
// GGUF metadata. Plain struct with explicit defaults; Validate() checks that the numbers fit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace awq {

class GgufFile;

enum class RopeScalingType : uint8_t { kNone, kLinear, kLlama3, kCount };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // Llama-3 style ("rope_type": "llama3"): frequencies below low_freq_factor are divided by
  // factor, above high_freq_factor kept, smoothly blended between.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

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

  // Throws awq::Error naming `source` and the offending field and value: non-positive sizes,
  // hidden_size not divisible into heads, num_attention_heads not a multiple of
  // num_key_value_heads, unsupported hidden_act or model_type.
  void Validate(const std::string& source) const;
};

// Parses a Hugging Face config.json of a Llama-family model (llama, mistral, qwen2 without
// bias differences, smollm). Throws awq::Error naming the file, the key and the value.
ModelConfig LoadHfConfig(const std::string& path);
// Same from the text of a config.json; `source` names it in errors.
ModelConfig ParseHfConfig(const std::string& json_text, const std::string& source);
// Serialises to config.json text as transformers writes it (keys sorted, 2-space indent).
std::string HfConfigToJson(const ModelConfig& config);

// Reads the llama.* (or <arch>.*) keys of a GGUF file.
ModelConfig ConfigFromGguf(const GgufFile& gguf);

}  // namespace awq
