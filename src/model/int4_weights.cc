// Switching a model's decoder linears to the int4 kernels: each slot's linears (the family's
// description says which) stacked into one packed matrix; a mixture of experts' gate/up and down
// packed per expert.
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "awq/model.h"
#include "awq/quantizer.h"
#include "model/arch.h"

namespace awq {

namespace {

// Stacks the rows of linears that share input width and quantization settings; false when they
// do not (then the fused product cannot run as one int4 matrix).
bool StackRows(const std::vector<const QuantizedLinear*>& parts, QuantizedLinear* out) {
  const QuantizedLinear& first = *parts[0];
  *out = QuantizedLinear();
  out->in = first.in;
  out->params = first.params;
  for (const QuantizedLinear* p : parts) {
    if (p->in != first.in || p->params.bits != first.params.bits ||
        p->params.group_size != first.params.group_size ||
        p->params.zero_point != first.params.zero_point) {
      return false;
    }
    out->out += p->out;
    out->q.insert(out->q.end(), p->q.begin(), p->q.end());
    out->scales.insert(out->scales.end(), p->scales.begin(), p->scales.end());
    out->zeros.insert(out->zeros.end(), p->zeros.begin(), p->zeros.end());
  }
  return true;
}

}  // namespace

bool Model::UseInt4Kernels(const std::map<std::string, QuantizedLinear>& linears) {
  const Architecture& arch = ArchitectureOf(config_);
  using Packed = std::array<std::shared_ptr<const Int4Matrix>, static_cast<size_t>(Slot::kCount)>;
  std::vector<Packed> packed;
  struct Experts {
    std::vector<std::shared_ptr<const Int4Matrix>> gate_up, down;
    std::shared_ptr<const Int4Matrix> shared_gate_up, shared_down;
  };
  std::vector<Experts> moe_packed;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    const std::string prefix = LayerPrefix(l);
    // The description's linears of each slot, stacked in its order (q, k, v; gate, up; or one
    // fused checkpoint linear).
    std::vector<const QuantizedLinear*> by_slot[static_cast<size_t>(Slot::kCount)];
    const bool moe = config_.IsMoeLayer(l);
    const auto find4 = [&](const std::string& name) -> const QuantizedLinear* {
      auto it = linears.find(name);
      if (it == linears.end() || it->second.params.bits != 4) return nullptr;
      if (GroupSize(it->second.params, it->second.in) % kInt4Inputs != 0) return nullptr;
      return &it->second;
    };
    for (const LinearSpec& spec : arch.linears) {
      // A sparse layer has experts where a dense one has its MLP linears.
      if (moe && (spec.slot == Slot::kGateUp || spec.slot == Slot::kDown)) continue;
      const QuantizedLinear* q = find4(prefix + spec.name);
      if (q == nullptr) return false;
      by_slot[static_cast<size_t>(spec.slot)].push_back(q);
    }
    // Each expert's gate and up stacked (ExpertLinears lists gate, up, down per expert).
    const std::vector<ExpertLinearSpec> experts = ExpertLinears(config_, l);
    Experts ex;
    for (size_t i = 0; i + 2 < experts.size(); i += 3) {
      const QuantizedLinear* gate = find4(experts[i].name);
      const QuantizedLinear* up = find4(experts[i + 1].name);
      const QuantizedLinear* down = find4(experts[i + 2].name);
      if (gate == nullptr || up == nullptr || down == nullptr) return false;
      QuantizedLinear fused;
      if (!StackRows({gate, up}, &fused)) return false;
      auto gu = std::make_shared<const Int4Matrix>(PackInt4(fused));
      auto dn = std::make_shared<const Int4Matrix>(PackInt4(*down));
      if (experts[i].expert == kSharedExpert) {
        ex.shared_gate_up = std::move(gu);
        ex.shared_down = std::move(dn);
      } else {
        ex.gate_up.push_back(std::move(gu));
        ex.down.push_back(std::move(dn));
      }
    }
    moe_packed.push_back(std::move(ex));
    Packed p;
    for (size_t s = 0; s < p.size(); ++s) {
      if (moe &&
          (s == static_cast<size_t>(Slot::kGateUp) || s == static_cast<size_t>(Slot::kDown))) {
        continue;
      }
      if (by_slot[s].empty()) return false;
      QuantizedLinear fused;
      const QuantizedLinear* one = by_slot[s][0];
      if (by_slot[s].size() > 1) {
        if (!StackRows(by_slot[s], &fused)) return false;
        one = &fused;
      }
      p[s] = std::make_shared<const Int4Matrix>(PackInt4(*one));
    }
    packed.push_back(std::move(p));
  }
  for (size_t l = 0; l < packed.size(); ++l) {
    LayerWeights& w = weights_.layers[l];
    w.qkv4 = packed[l][static_cast<size_t>(Slot::kQkv)];
    w.o4 = packed[l][static_cast<size_t>(Slot::kO)];
    w.gate_up4 = packed[l][static_cast<size_t>(Slot::kGateUp)];
    w.down4 = packed[l][static_cast<size_t>(Slot::kDown)];
    w.experts_gate_up4 = std::move(moe_packed[l].gate_up);
    w.experts_down4 = std::move(moe_packed[l].down);
    w.shared_gate_up4 = std::move(moe_packed[l].shared_gate_up);
    w.shared_down4 = std::move(moe_packed[l].shared_down);
  }
  return true;
}

bool Model::uses_int4() const {
  return !weights_.layers.empty() && weights_.layers[0].qkv4 != nullptr;
}

}  // namespace awq
