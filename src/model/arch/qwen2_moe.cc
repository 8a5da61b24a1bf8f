// Qwen2-MoE (Qwen1.5-MoE, Qwen2-57B-A14B): the Qwen2 block (q/k/v biases) whose MLP is a mixture
// of experts plus a shared expert on every token, scaled by sigmoid(shared_expert_gate x).
#include "model/arch.h"

namespace awq {

void ReadQwenSlidingWindow(const nlohmann::json& root, const std::string& source, ModelConfig& c);

namespace {
void ReadQwen2Moe(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  // The biases are always there in published checkpoints; transformers 5 writes qkv_bias.
  c.attention_bias = !root.contains("qkv_bias") || !root.at("qkv_bias").is_boolean() ||
                     root.at("qkv_bias").get<bool>();
  ReadQwenSlidingWindow(root, source, c);
  arch_keys::ReadMoe(root, source, "num_experts", c.intermediate_size, c);
  c.norm_topk_prob = root.contains("norm_topk_prob") && root.at("norm_topk_prob").is_boolean() &&
                     root.at("norm_topk_prob").get<bool>();
}
// llama.cpp's qwen2moe graph does not renormalise the top-k weights.
void ReadQwen2moeGguf(const GgufFile& gguf, const std::string& prefix, ModelConfig& c) {
  arch_keys::ReadMoeGguf(gguf, prefix, false, c);
}
}  // namespace

const Architecture& Qwen2MoeArchitecture() {
  static const Architecture a = [] {
    Architecture a;
    a.model_type = "qwen2_moe";
    a.hf_class = "Qwen2MoeForCausalLM";
    a.gguf_archs = {"qwen2moe"};
    a.read_gguf = ReadQwen2moeGguf;
    a.write_gguf = arch_keys::WriteMoeGguf;
    a.linears = kSeparateLinears;  // the MLP's only on mlp_only_layers
    a.moe = {.router = "mlp.gate",
             .experts = "mlp.experts.",
             .gate = "gate_proj",
             .up = "up_proj",
             .down = "down_proj",
             .shared = "mlp.shared_expert",
             .shared_gate = "mlp.shared_expert_gate"};
    // The standard groups; a sparse layer searches its experts' groups in place of the MLP's
    // (quant/quantize_model.cc, AwqBlock). The router and the shared expert's gate stay in full
    // precision, as vLLM and transformers expect of AutoAWQ checkpoints.
    a.awq_groups = kStandardAwqGroups;
    a.default_not_convert = {"mlp.gate", "shared_expert_gate"};
    a.read_hf = ReadQwen2Moe;
    return a;
  }();
  return a;
}

}  // namespace awq
