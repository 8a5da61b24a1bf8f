// Qwen3: the Llama block without biases, with q and k RMS-normed per head before RoPE.
#include "model/arch.h"

namespace awq {

void ReadQwenSlidingWindow(const nlohmann::json& root, const std::string& source, ModelConfig& c);

const Architecture& Qwen3Architecture() {
  static const Architecture a = [] {
    Architecture a;
    a.model_type = "qwen3";
    a.hf_class = "Qwen3ForCausalLM";
    a.gguf_archs = {"qwen3"};
    a.recipe.qk_norm = true;
    a.norms.q = "self_attn.q_norm";
    a.norms.k = "self_attn.k_norm";
    a.linears = kSeparateLinears;
    a.awq_groups = kStandardAwqGroups;
    a.read_hf = ReadQwenSlidingWindow;
    return a;
  }();
  return a;
}

}  // namespace awq
