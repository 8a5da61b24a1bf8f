// Mixtral: the Mistral block whose MLP is a mixture of experts (block_sparse_moe: a router over
// num_local_experts SiLU-gated experts w1/w3/w2, top num_experts_per_tok, weights renormalised).
#include "model/arch.h"

namespace awq {

namespace {
void ReadMixtral(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  c.sliding_window = arch_keys::Int(root, source, "sliding_window", 0);
  // Every expert is intermediate_size wide, and transformers' MixtralSparseMoeBlock always
  // divides the top-k probabilities by their sum (there is no norm_topk_prob key).
  arch_keys::ReadMoe(root, source, "num_local_experts", c.intermediate_size, c);
  c.norm_topk_prob = true;
}
// llama.cpp's Mixtral graph renormalises the top-k weights, as transformers does.
void ReadMixtralGguf(const GgufFile& gguf, const std::string& prefix, ModelConfig& c) {
  arch_keys::ReadMoeGguf(gguf, prefix, true, c);
}
}  // namespace

const Architecture& MixtralArchitecture() {
  static const Architecture a = [] {
    Architecture a;
    a.model_type = "mixtral";
    a.hf_class = "MixtralForCausalLM";
    // llama.cpp writes Mixtral as "llama" with expert_count (ConfigFromGguf tells them apart),
    // its q/k rows interleaved as Llama's.
    a.gguf_archs = {};
    a.gguf_write_arch = "llama";
    a.gguf_permuted_qk = true;
    a.read_gguf = ReadMixtralGguf;
    a.write_gguf = arch_keys::WriteMoeGguf;
    a.linears = kAttentionLinears;
    a.moe = {.router = "block_sparse_moe.gate",
             .experts = "block_sparse_moe.experts.",
             .gate = "w1",
             .up = "w3",
             .down = "w2"};
    // The standard groups; a sparse layer searches its experts' groups in place of the MLP's
    // (quant/quantize_model.cc, AwqBlock). The router stays in full
    // precision, as vLLM and transformers expect of AutoAWQ checkpoints.
    a.awq_groups = kStandardAwqGroups;
    a.default_not_convert = {"gate"};
    a.read_hf = ReadMixtral;
    a.write_hf = arch_keys::WriteSlidingWindow;
    return a;
  }();
  return a;
}

}  // namespace awq
