// Qwen2 / Qwen2.5: the Llama block with q/k/v biases (always present, not stated in config.json)
// and optional sliding windows on the layers from max_window_layers on.
#include "model/arch.h"

namespace awq {

// Shared with Qwen3: use_sliding_window turns the window on for layers >= max_window_layers,
// unless the config lists layer_types itself.
void ReadQwenSlidingWindow(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  const bool use = root.contains("use_sliding_window") &&
                   root.at("use_sliding_window").is_boolean() &&
                   root.at("use_sliding_window").get<bool>();
  if (!use) return;
  c.sliding_window = arch_keys::Int(root, source, "sliding_window", 0);
  if (arch_keys::Has(root, "layer_types")) {
    arch_keys::ReadLayerTypes(root, source, c);
    return;
  }
  const int64_t first = arch_keys::Int(root, source, "max_window_layers", c.num_hidden_layers);
  c.layer_types.assign(static_cast<size_t>(c.num_hidden_layers), LayerAttention::kFull);
  for (int64_t l = first; l < c.num_hidden_layers; ++l) {
    c.layer_types[static_cast<size_t>(l)] = LayerAttention::kSliding;
  }
}

namespace {
void ReadQwen2(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  c.attention_bias = !root.contains("attention_bias") || !root.at("attention_bias").is_boolean() ||
                     root.at("attention_bias").get<bool>();
  ReadQwenSlidingWindow(root, source, c);
}
}  // namespace

const Architecture& Qwen2Architecture() {
  static const Architecture a = [] {
    Architecture a;
    a.model_type = "qwen2";
    a.hf_class = "Qwen2ForCausalLM";
    a.gguf_archs = {"qwen2"};
    a.linears = kSeparateLinears;
    a.awq_groups = kStandardAwqGroups;
    a.read_hf = ReadQwen2;
    return a;
  }();
  return a;
}

}  // namespace awq
