// Qwen3-MoE (Qwen3-30B-A3B): the Qwen3 block (per-head q/k norms) whose MLP is a mixture of
// experts (mlp.gate router, mlp.experts.N.gate/up/down_proj), top-k renormalised when
// norm_topk_prob; layers in mlp_only_layers keep a dense mlp.gate/up/down_proj.
#include "model/arch.h"

namespace awq {

void ReadQwenSlidingWindow(const nlohmann::json& root, const std::string& source, ModelConfig& c);

namespace {
void ReadQwen3Moe(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  ReadQwenSlidingWindow(root, source, c);
  arch_keys::ReadMoe(root, source, "num_experts", c.intermediate_size, c);
  c.norm_topk_prob = root.contains("norm_topk_prob") && root.at("norm_topk_prob").is_boolean() &&
                     root.at("norm_topk_prob").get<bool>();
}
// llama.cpp's qwen3moe graph renormalises the top-k weights.
void ReadQwen3moeGguf(const GgufFile& gguf, const std::string& prefix, ModelConfig& c) {
  arch_keys::ReadMoeGguf(gguf, prefix, true, c);
}
}  // namespace

const Architecture& Qwen3MoeArchitecture() {
  static const Architecture a = [] {
    Architecture a;
    a.model_type = "qwen3_moe";
    a.hf_class = "Qwen3MoeForCausalLM";
    a.gguf_archs = {"qwen3moe"};
    a.read_gguf = ReadQwen3moeGguf;
    a.write_gguf = arch_keys::WriteMoeGguf;
    a.recipe.qk_norm = true;
    a.norms.q = "self_attn.q_norm";
    a.norms.k = "self_attn.k_norm";
    a.linears = kSeparateLinears;  // the MLP's only on mlp_only_layers
    a.moe = {.router = "mlp.gate",
             .experts = "mlp.experts.",
             .gate = "gate_proj",
             .up = "up_proj",
             .down = "down_proj"};
    // The standard groups; a sparse layer searches its experts' groups in place of the MLP's
    // (quant/quantize_model.cc, AwqBlock). The router stays in full
    // precision, as vLLM and transformers expect of AutoAWQ checkpoints.
    a.awq_groups = kStandardAwqGroups;
    a.default_not_convert = {"mlp.gate"};
    a.read_hf = ReadQwen3Moe;
    return a;
  }();
  return a;
}

}  // namespace awq
