// Switching a model's decoder linears to the int4 kernels: each slot's linears (the family's
// description says which) stacked into one packed matrix.
#include <array>
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
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    const std::string prefix = LayerPrefix(l);
    // The description's linears of each slot, stacked in its order (q, k, v; gate, up; or one
    // fused checkpoint linear).
    std::vector<const QuantizedLinear*> by_slot[static_cast<size_t>(Slot::kCount)];
    for (const LinearSpec& spec : arch.linears) {
      auto it = linears.find(prefix + spec.name);
      if (it == linears.end() || it->second.params.bits != 4) return false;
      const int64_t g = GroupSize(it->second.params, it->second.in);
      if (g % kInt4Inputs != 0) return false;
      by_slot[static_cast<size_t>(spec.slot)].push_back(&it->second);
    }
    Packed p;
    for (size_t s = 0; s < p.size(); ++s) {
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
  }
  return true;
}

bool Model::uses_int4() const {
  return !weights_.layers.empty() && weights_.layers[0].qkv4 != nullptr;
}

}  // namespace awq
