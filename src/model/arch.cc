// The registry of model families and what their descriptions share: row ranges of the fused
// slots, the standard AWQ groups, linear names and config-key helpers.
#include "model/arch.h"

#include "awq/gguf.h"

#include <algorithm>

#include "awq/error.h"
#include "awq/model.h"
#include "model/recurrent.h"

namespace awq {

const std::vector<AwqGroupSpec> kStandardAwqGroups = {
    {"qkv", ScaleOwner::kAttnInNorm, Slot::kQkv, Inspect::kAttention, false},
    {"o", ScaleOwner::kVRows, Slot::kO, Inspect::kOwnOutput, true},
    {"gate_up", ScaleOwner::kMlpInNorm, Slot::kGateUp, Inspect::kMlp, false},
    {"down", ScaleOwner::kUpRows, Slot::kDown, Inspect::kOwnOutput, false},
};

const std::vector<LinearSpec> kSeparateLinears = {
    {"self_attn.q_proj", "attn_q", Slot::kQkv, Part::kQ},
    {"self_attn.k_proj", "attn_k", Slot::kQkv, Part::kK},
    {"self_attn.v_proj", "attn_v", Slot::kQkv, Part::kV},
    {"self_attn.o_proj", "attn_output", Slot::kO, Part::kAll},
    {"mlp.gate_proj", "ffn_gate", Slot::kGateUp, Part::kGate},
    {"mlp.up_proj", "ffn_up", Slot::kGateUp, Part::kUp},
    {"mlp.down_proj", "ffn_down", Slot::kDown, Part::kAll},
};

const std::vector<LinearSpec> kAttentionLinears(kSeparateLinears.begin(),
                                                kSeparateLinears.begin() + 4);

namespace {

const Architecture* const* Registry() {
  static const Architecture* const kAll[] = {
      &Gemma3Architecture(),   &LlamaArchitecture(),    &MambaArchitecture(),
      &MistralArchitecture(),  &MixtralArchitecture(),  &Phi3Architecture(),
      &Qwen2Architecture(),    &Qwen2MoeArchitecture(), &Qwen3Architecture(),
      &Qwen3MoeArchitecture(), &RwkvArchitecture(),     nullptr};
  return kAll;
}

}  // namespace

RowRange SlotRows(const ModelConfig& c, Slot slot, Part part) {
  const int64_t d = c.hidden_size, qd = c.num_attention_heads * c.head_dim,
                kvd = c.num_key_value_heads * c.head_dim, inter = c.intermediate_size;
  switch (slot) {
    case Slot::kQkv:
      switch (part) {
        case Part::kAll:
          return {0, qd + 2 * kvd, d};
        case Part::kQ:
          return {0, qd, d};
        case Part::kK:
          return {qd, kvd, d};
        case Part::kV:
          return {qd + kvd, kvd, d};
        default:
          break;
      }
      break;
    case Slot::kO:
      if (part == Part::kAll) return {0, d, qd};
      break;
    case Slot::kGateUp:
      switch (part) {
        case Part::kAll:
          return {0, 2 * inter, d};
        case Part::kGate:
          return {0, inter, d};
        case Part::kUp:
          return {inter, inter, d};
        default:
          break;
      }
      break;
    case Slot::kDown:
      if (part == Part::kAll) return {0, d, inter};
      break;
    case Slot::kCount:
      break;
  }
  AWQ_CHECK(false && "part does not belong to slot");
  return {};
}

const Architecture* FindArchitecture(const std::string& model_type) {
  for (const Architecture* const* a = Registry(); *a != nullptr; ++a) {
    if (model_type == (*a)->model_type) return *a;
  }
  return nullptr;
}

const Architecture* FindGgufArchitecture(const std::string& gguf_arch) {
  for (const Architecture* const* a = Registry(); *a != nullptr; ++a) {
    for (const char* g : (*a)->gguf_archs) {
      if (gguf_arch == g) return *a;
    }
  }
  return nullptr;
}

std::string SupportedModelTypes() {
  std::string s;
  for (const Architecture* const* a = Registry(); *a != nullptr; ++a) {
    s += (s.empty() ? "" : ", ") + std::string((*a)->model_type);
  }
  return s;
}

std::string SupportedGgufArchitectures() {
  std::string s;
  for (const Architecture* const* a = Registry(); *a != nullptr; ++a) {
    for (const char* g : (*a)->gguf_archs) s += (s.empty() ? "" : ", ") + std::string(g);
  }
  return s;
}

const Architecture& ArchitectureOf(const ModelConfig& c) {
  const Architecture* a = FindArchitecture(c.model_type);
  if (a == nullptr) {
    throw Error("model_type \"" + c.model_type +
                "\" is not supported (supported: " + SupportedModelTypes() + ")");
  }
  return *a;
}

std::string LayerPrefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }

std::vector<std::string> LinearNames(const ModelConfig& c, int64_t layer) {
  const Architecture& arch = ArchitectureOf(c);
  if (arch.recurrent != nullptr) return RecurrentLinearNames(*arch.recurrent, layer);
  const std::string p = LayerPrefix(layer);
  std::vector<std::string> names;
  for (const LinearSpec& l : arch.linears) {
    // A sparse layer has experts where a dense one has its MLP linears.
    if (c.IsMoeLayer(layer) && (l.slot == Slot::kGateUp || l.slot == Slot::kDown)) continue;
    names.push_back(p + l.name);
  }
  return names;
}

std::vector<ExpertLinearSpec> ExpertLinears(const ModelConfig& c, int64_t layer) {
  std::vector<ExpertLinearSpec> out;
  if (!c.IsMoeLayer(layer)) return out;
  const MoeNames& m = ArchitectureOf(c).moe;
  const std::string p = LayerPrefix(layer);
  const int64_t d = c.hidden_size;
  auto add = [&](const std::string& prefix, int64_t expert, int64_t width) {
    out.push_back({prefix + m.gate, expert, Part::kGate, width, d});
    out.push_back({prefix + m.up, expert, Part::kUp, width, d});
    out.push_back({prefix + m.down, expert, Part::kAll, d, width});
  };
  for (int64_t e = 0; e < c.num_experts; ++e) {
    add(p + m.experts + std::to_string(e) + ".", e, c.moe_intermediate_size);
  }
  if (*m.shared != '\0' && c.shared_expert_intermediate_size > 0) {
    // Qwen2-MoE's shared expert names its linears gate_proj/up_proj/down_proj.
    const std::string s = p + m.shared + ".";
    const int64_t is = c.shared_expert_intermediate_size;
    out.push_back({s + "gate_proj", kSharedExpert, Part::kGate, is, d});
    out.push_back({s + "up_proj", kSharedExpert, Part::kUp, is, d});
    out.push_back({s + "down_proj", kSharedExpert, Part::kAll, d, is});
  }
  return out;
}

namespace arch_keys {

bool Has(const nlohmann::json& root, const char* key) {
  const auto it = root.find(key);
  return it != root.end() && !it->is_null();
}

int64_t Int(const nlohmann::json& root, const std::string& source, const char* key,
            int64_t fallback) {
  if (!Has(root, key)) return fallback;
  const nlohmann::json& v = root.at(key);
  if (!v.is_number_integer()) {
    throw Error(source + ": " + key + ": expected an integer, got " + v.dump());
  }
  return v.get<int64_t>();
}

double Number(const nlohmann::json& root, const std::string& source, const char* key,
              double fallback) {
  if (!Has(root, key)) return fallback;
  const nlohmann::json& v = root.at(key);
  if (!v.is_number()) throw Error(source + ": " + key + ": expected a number, got " + v.dump());
  return v.get<double>();
}

void ReadLayerTypes(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  if (!Has(root, "layer_types")) return;
  const nlohmann::json& lt = root.at("layer_types");
  if (!lt.is_array()) throw Error(source + ": layer_types: expected a list, got " + lt.dump());
  c.layer_types.clear();
  for (size_t i = 0; i < lt.size(); ++i) {
    const std::string t = lt[i].is_string() ? lt[i].get<std::string>() : lt[i].dump();
    if (t == "sliding_attention") {
      c.layer_types.push_back(LayerAttention::kSliding);
    } else if (t == "full_attention") {
      c.layer_types.push_back(LayerAttention::kFull);
    } else {
      throw Error(source + ": layer_types[" + std::to_string(i) + "]: unsupported value " + t +
                  " (supported: sliding_attention, full_attention)");
    }
  }
}

void WriteLayerTypes(const ModelConfig& c, nlohmann::json& j) {
  if (c.layer_types.empty()) return;
  nlohmann::json lt = nlohmann::json::array();
  for (LayerAttention t : c.layer_types) {
    lt.push_back(t == LayerAttention::kSliding ? "sliding_attention" : "full_attention");
  }
  j["layer_types"] = lt;
}

void WriteSlidingWindow(const ModelConfig& c, nlohmann::json& j) {
  j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nullptr;
}

void ReadMoeGguf(const GgufFile& gguf, const std::string& p, bool norm_topk_prob, ModelConfig& c) {
  c.num_experts = static_cast<int64_t>(gguf.GetUint(p + "expert_count", 0));
  if (c.num_experts <= 0) return;
  c.num_experts_per_tok = static_cast<int64_t>(gguf.GetUint(p + "expert_used_count", 2));
  c.moe_intermediate_size = static_cast<int64_t>(
      gguf.GetUint(p + "expert_feed_forward_length", static_cast<uint64_t>(c.intermediate_size)));
  c.shared_expert_intermediate_size =
      static_cast<int64_t>(gguf.GetUint(p + "expert_shared_feed_forward_length", 0));
  c.norm_topk_prob = norm_topk_prob;
  c.dense_mlp_layers.clear();
}

void WriteMoeGguf(const ModelConfig& c, const std::string& p, GgufMetadata& kv) {
  const auto u32 = [](int64_t v) { return GgufU32(static_cast<uint32_t>(v)); };
  kv.emplace_back(p + "expert_count", u32(c.num_experts));
  kv.emplace_back(p + "expert_used_count", u32(c.num_experts_per_tok));
  if (c.moe_intermediate_size != c.intermediate_size) {
    kv.emplace_back(p + "expert_feed_forward_length", u32(c.moe_intermediate_size));
  }
  if (c.shared_expert_intermediate_size > 0) {
    kv.emplace_back(p + "expert_shared_feed_forward_length",
                    u32(c.shared_expert_intermediate_size));
  }
}

void ReadMoe(const nlohmann::json& root, const std::string& source, const char* experts_key,
             int64_t expert_width, ModelConfig& c) {
  const char* other =
      std::string(experts_key) == "num_experts" ? "num_local_experts" : "num_experts";
  c.num_experts = Int(root, source, experts_key, Int(root, source, other, 0));
  if (c.num_experts <= 0) {
    throw Error(source + ": " + experts_key + ": a mixture-of-experts model needs experts, got " +
                std::to_string(c.num_experts));
  }
  c.num_experts_per_tok = Int(root, source, "num_experts_per_tok", 2);
  c.moe_intermediate_size = Int(root, source, "moe_intermediate_size", expert_width);
  c.shared_expert_intermediate_size = Int(root, source, "shared_expert_intermediate_size", 0);
  // transformers (Qwen2-MoE, Qwen3-MoE): layer l is sparse unless listed in mlp_only_layers or
  // (l + 1) is not a multiple of decoder_sparse_step.
  const int64_t step = Int(root, source, "decoder_sparse_step", 1);
  if (step <= 0) {
    throw Error(source + ": decoder_sparse_step: must be positive, got " + std::to_string(step));
  }
  std::vector<int64_t> only;
  if (Has(root, "mlp_only_layers")) {
    const nlohmann::json& v = root.at("mlp_only_layers");
    if (!v.is_array()) throw Error(source + ": mlp_only_layers: expected a list, got " + v.dump());
    for (const nlohmann::json& e : v) {
      if (!e.is_number_integer()) {
        throw Error(source + ": mlp_only_layers: expected layer numbers, got " + e.dump());
      }
      only.push_back(e.get<int64_t>());
    }
  }
  c.dense_mlp_layers.clear();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (std::find(only.begin(), only.end(), l) != only.end() || (l + 1) % step != 0) {
      c.dense_mlp_layers.push_back(l);
    }
  }
}

}  // namespace arch_keys

}  // namespace awq
