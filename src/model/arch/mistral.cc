// Mistral: the Llama block with sliding-window attention on every layer (config sliding_window).
#include "model/arch.h"

namespace awq {

namespace {
void ReadMistral(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  // null (Mistral v0.2 and later) means full attention.
  c.sliding_window = arch_keys::Int(root, source, "sliding_window", 0);
}
}  // namespace

const Architecture& MistralArchitecture() {
  static const Architecture a = [] {
    Architecture a;
    a.model_type = "mistral";
    a.hf_class = "MistralForCausalLM";
    a.gguf_archs = {"mistral"};
    a.gguf_write_arch = "llama";  // as llama.cpp's converter writes MistralForCausalLM
    a.linears = kSeparateLinears;
    a.awq_groups = kStandardAwqGroups;
    a.gguf_permuted_qk = true;
    a.read_hf = ReadMistral;
    a.write_hf = arch_keys::WriteSlidingWindow;
    return a;
  }();
  return a;
}

}  // namespace awq
