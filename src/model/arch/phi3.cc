// Phi-3 / Phi-4-mini: the Llama block with q/k/v and gate/up fused in the checkpoint itself
// (qkv_proj, gate_up_proj), and a sliding window on every layer when the config sets one.
#include "awq/error.h"
#include "model/arch.h"

namespace awq {

namespace {
void ReadPhi3(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  c.sliding_window = arch_keys::Int(root, source, "sliding_window", 0);
  const double partial = arch_keys::Number(root, source, "partial_rotary_factor", 1.0);
  if (partial != 1.0) {
    throw Error(source + ": partial_rotary_factor: " + std::to_string(partial) +
                " is not supported (only 1.0: RoPE over the whole head)");
  }
}

// llama.cpp's phi3 keeps the window as attention.sliding_window (absent: none).
void ReadPhi3Gguf(const GgufFile& gguf, const std::string& p, ModelConfig& c) {
  c.sliding_window = static_cast<int64_t>(gguf.GetUint(p + "attention.sliding_window", 0));
}

void WritePhi3Gguf(const ModelConfig& c, const std::string& p, GgufMetadata& kv) {
  if (c.sliding_window > 0) {
    kv.emplace_back(p + "attention.sliding_window",
                    GgufU32(static_cast<uint32_t>(c.sliding_window)));
  }
}
}  // namespace

const Architecture& Phi3Architecture() {
  static const Architecture a = [] {
    Architecture a;
    a.model_type = "phi3";
    a.hf_class = "Phi3ForCausalLM";
    a.gguf_archs = {"phi3"};
    // llama.cpp keeps the fused tensors too; its ffn_up holds gate and up stacked.
    a.linears = {{"self_attn.qkv_proj", "attn_qkv", Slot::kQkv, Part::kAll},
                 {"self_attn.o_proj", "attn_output", Slot::kO, Part::kAll},
                 {"mlp.gate_up_proj", "ffn_up", Slot::kGateUp, Part::kAll},
                 {"mlp.down_proj", "ffn_down", Slot::kDown, Part::kAll}};
    // AutoAWQ's phi3.py: the same four groups, the o group's scale folded into the v rows (the
    // last rows) of qkv_proj and the down group's into the up rows of gate_up_proj.
    a.awq_groups = kStandardAwqGroups;
    a.read_hf = ReadPhi3;
    a.write_hf = arch_keys::WriteSlidingWindow;
    a.read_gguf = ReadPhi3Gguf;
    a.write_gguf = WritePhi3Gguf;
    return a;
  }();
  return a;
}

}  // namespace awq
