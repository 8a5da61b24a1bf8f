// Switching a model's decoder linears to the int4 kernels (fused q/k/v and gate/up packing).
#include <string>
#include <vector>

#include "awq/model.h"
#include "awq/quantize.h"

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
  struct Packed {
    std::shared_ptr<const Int4Matrix> qkv, o, gate_up, down;
  };
  std::vector<Packed> packed;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    const std::vector<std::string> names = LinearNames(l);  // q k v o gate up down
    std::vector<const QuantizedLinear*> ql;
    for (const std::string& n : names) {
      auto it = linears.find(n);
      if (it == linears.end() || it->second.params.bits != 4) return false;
      const int64_t g = GroupSize(it->second.params, it->second.in);
      if (g % kInt4Inputs != 0) return false;
      ql.push_back(&it->second);
    }
    QuantizedLinear qkv, gate_up;
    if (!StackRows({ql[0], ql[1], ql[2]}, &qkv) || !StackRows({ql[4], ql[5]}, &gate_up)) {
      return false;
    }
    Packed p;
    p.qkv = std::make_shared<const Int4Matrix>(PackInt4(qkv));
    p.o = std::make_shared<const Int4Matrix>(PackInt4(*ql[3]));
    p.gate_up = std::make_shared<const Int4Matrix>(PackInt4(gate_up));
    p.down = std::make_shared<const Int4Matrix>(PackInt4(*ql[6]));
    packed.push_back(std::move(p));
  }
  for (size_t l = 0; l < packed.size(); ++l) {
    LayerWeights& w = weights_.layers[l];
    w.qkv4 = packed[l].qkv;
    w.o4 = packed[l].o;
    w.gate_up4 = packed[l].gate_up;
    w.down4 = packed[l].down;
  }
  return true;
}

bool Model::uses_int4() const {
  return !weights_.layers.empty() && weights_.layers[0].qkv4 != nullptr;
}

}  // namespace awq
