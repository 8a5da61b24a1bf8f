// Llama (and SmolLM, Llama 2/3): RMSNorm pre-norm blocks, rotary grouped-query attention, SwiGLU.
#include "model/arch.h"

namespace awq {

const Architecture& LlamaArchitecture() {
  static const Architecture a = [] {
    Architecture a;
    a.model_type = "llama";
    a.hf_class = "LlamaForCausalLM";
    a.gguf_archs = {"llama"};
    a.linears = kSeparateLinears;
    a.awq_groups = kStandardAwqGroups;
    // llama.cpp's converter interleaves the rotary halves of q and k for the "normal" rope.
    a.gguf_permuted_qk = true;
    return a;
  }();
  return a;
}

}  // namespace awq
