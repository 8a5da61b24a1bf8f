// GGUF weight source: Hugging Face names mapped to llama.cpp names, q/k rows un-permuted and
// Gemma's stored 1 + w norms shifted back, by the family's description.
#include <cctype>
#include <cstring>
#include <map>
#include <string>

#include "awq/gguf.h"
#include "model/arch.h"
#include "model/weight_source.h"

namespace awq {

namespace {

bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

}  // namespace

std::string GgufTensorName(const Architecture& arch, const std::string& hf) {
  static const std::pair<const char*, const char*> kGlobal[] = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
  };
  for (const auto& [h, g] : kGlobal) {
    if (hf == h) return g;
  }
  static const std::string kPrefix = "model.layers.";
  if (hf.compare(0, kPrefix.size(), kPrefix) != 0) return "";
  const size_t dot = hf.find('.', kPrefix.size());
  if (dot == std::string::npos) return "";
  const std::string layer = hf.substr(kPrefix.size(), dot - kPrefix.size());
  const std::string rest = hf.substr(dot + 1);
  // llama.cpp names each norm by role, whatever the checkpoint calls it.
  const std::pair<const char*, const char*> norms[] = {{arch.norms.attn_in, "attn_norm"},
                                                       {arch.norms.mlp_in, "ffn_norm"},
                                                       {arch.norms.attn_out, "post_attention_norm"},
                                                       {arch.norms.mlp_out, "post_ffw_norm"},
                                                       {arch.norms.q, "attn_q_norm"},
                                                       {arch.norms.k, "attn_k_norm"}};
  for (const auto& [h, g] : norms) {
    if (*h != '\0' && rest == std::string(h) + ".weight")
      return "blk." + layer + "." + g + ".weight";
  }
  for (const LinearSpec& l : arch.linears) {
    for (const char* suffix : {".weight", ".bias"}) {
      if (rest == std::string(l.name) + suffix) return "blk." + layer + "." + l.gguf + suffix;
    }
  }
  // A mixture of experts: llama.cpp stacks every expert's gate, up and down into one 3-D tensor
  // each (ffn_*_exps, expert e at index e of the outermost dimension).
  const MoeNames& m = arch.moe;
  if (*m.router == '\0') return "";
  const std::string blk = "blk." + layer + ".";
  if (rest == std::string(m.router) + ".weight") return blk + "ffn_gate_inp.weight";
  if (*m.shared_gate != '\0' && rest == std::string(m.shared_gate) + ".weight") {
    return blk + "ffn_gate_inp_shexp.weight";
  }
  if (*m.shared != '\0') {
    for (const auto& [h, g] : {std::pair<const char*, const char*>{"gate_proj", "ffn_gate_shexp"},
                               {"up_proj", "ffn_up_shexp"},
                               {"down_proj", "ffn_down_shexp"}}) {
      if (rest == std::string(m.shared) + "." + h + ".weight") return blk + g + ".weight";
    }
  }
  if (GgufExpertIndex(arch, hf) < 0) return "";
  const size_t last = rest.rfind('.', rest.size() - std::strlen(".weight") - 1);
  const std::string part = rest.substr(last + 1, rest.size() - last - 1 - std::strlen(".weight"));
  if (part == m.gate) return blk + "ffn_gate_exps.weight";
  if (part == m.up) return blk + "ffn_up_exps.weight";
  if (part == m.down) return blk + "ffn_down_exps.weight";
  return "";
}

int64_t GgufExpertIndex(const Architecture& arch, const std::string& hf) {
  const MoeNames& m = arch.moe;
  if (*m.experts == '\0') return -1;
  const size_t at = hf.find(m.experts);
  if (at == std::string::npos) return -1;
  const size_t start = at + std::strlen(m.experts);
  size_t end = start;
  while (end < hf.size() && std::isdigit(static_cast<unsigned char>(hf[end]))) ++end;
  if (end == start || end >= hf.size() || hf[end] != '.') return -1;
  return std::stoll(hf.substr(start, end - start));
}

std::vector<int64_t> GgufQkRowOrder(int64_t rows, int64_t n_heads) {
  AWQ_CHECK(n_heads > 0 && rows % (2 * n_heads) == 0);
  const int64_t hd = rows / n_heads, half = hd / 2;
  std::vector<int64_t> order(static_cast<size_t>(rows));
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t j = 0; j < half; ++j) {
      for (int64_t t = 0; t < 2; ++t) order[h * hd + 2 * j + t] = h * hd + t * half + j;
    }
  }
  return order;
}

namespace {

class GgufWeights final : public WeightSource {
 public:
  explicit GgufWeights(const std::string& path)
      : file_(GgufFile::Open(path)),
        config_(ConfigFromGguf(file_)),
        arch_(ArchitectureOf(config_)) {}

  const std::string& path() const override { return file_.path(); }
  const ModelConfig& config() const override { return config_; }

  bool Has(const std::string& hf_name) const override {
    const std::string g = GgufTensorName(arch_, hf_name);
    return !g.empty() && file_.FindTensor(g) != nullptr;
  }

  Tensor GetF32(const std::string& hf_name) const override {
    const std::string g = GgufTensorName(arch_, hf_name);
    if (g.empty() || file_.FindTensor(g) == nullptr) {
      throw Error(file_.path() + ": tensor " + (g.empty() ? hf_name : g) + " (Hugging Face name " +
                  hf_name + ") is missing");
    }
    const int64_t expert = GgufExpertIndex(arch_, hf_name);
    if (expert >= 0) return ExpertSlice(g, hf_name, expert);
    Tensor t = file_.ReadF32(g);
    if (EndsWith(g, "ffn_gate_inp_shexp.weight")) t = t.Reshape({1, t.numel()});
    CheckFiniteWeights(file_.path(), g + " (Hugging Face name " + hf_name + ")", t);
    if (arch_.gguf_norm_plus_one && EndsWith(g, "norm.weight")) {
      // llama.cpp's converter stores Gemma's norms as 1 + w so that its RMSNorm multiplies by
      // them directly; the model here keeps Hugging Face's w.
      float* p = t.data<float>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] -= 1.0f;
      return t;
    }
    // llama.cpp's converter interleaves the two rotary halves of every q and k head; the
    // forward pass here uses the Hugging Face rotate_half layout.
    if (!arch_.gguf_permuted_qk) return t;
    if (EndsWith(g, "attn_q.weight") || EndsWith(g, "attn_q.bias")) {
      t = UnpermuteGgufQk(t, config_.num_attention_heads);
    } else if (EndsWith(g, "attn_k.weight") || EndsWith(g, "attn_k.bias")) {
      t = UnpermuteGgufQk(t, config_.num_key_value_heads);
    }
    return t;
  }

 private:
  // Expert `e` of a stacked [E, rows, in] tensor. A block's loading asks for every expert of
  // three tensors in turn, so the tensors of one layer stay converted until another layer's is
  // asked for.
  Tensor ExpertSlice(const std::string& g, const std::string& hf_name, int64_t e) const {
    const std::string layer = g.substr(0, g.find('.', 4) + 1);
    if (cached_layer_ != layer) {
      cached_.clear();
      cached_layer_ = layer;
    }
    auto it = cached_.find(g);
    if (it == cached_.end()) {
      Tensor t = file_.ReadF32(g);
      CheckFiniteWeights(file_.path(), g, t);
      it = cached_.emplace(g, std::move(t)).first;
    }
    const Tensor& all = it->second;
    if (all.ndim() != 3 || e >= all.dim(0)) {
      throw Error(file_.path() + ": tensor " + g + " has no expert " + std::to_string(e) +
                  " (Hugging Face name " + hf_name + ")");
    }
    Tensor out(DType::kF32, {all.dim(1), all.dim(2)});
    std::memcpy(out.data<float>(), all.data<float>() + e * out.numel(), out.nbytes());
    return out;
  }

  GgufFile file_;
  ModelConfig config_;
  const Architecture& arch_;
  mutable std::string cached_layer_;
  mutable std::map<std::string, Tensor> cached_;
};

}  // namespace

Tensor UnpermuteGgufQk(const Tensor& w, int64_t n_heads) {
  const int64_t rows = w.dim(0);
  const int64_t cols = w.ndim() > 1 ? w.numel() / rows : 1;
  AWQ_CHECK(n_heads > 0 && rows % (2 * n_heads) == 0);
  const int64_t hd = rows / n_heads, half = hd / 2;
  Tensor out(DType::kF32, w.shape());
  const float* src = w.data<float>();
  float* dst = out.data<float>();
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t j = 0; j < half; ++j) {
      for (int64_t t = 0; t < 2; ++t) {
        const int64_t from = h * hd + 2 * j + t, to = h * hd + t * half + j;
        std::memcpy(dst + to * cols, src + from * cols, static_cast<size_t>(cols) * sizeof(float));
      }
    }
  }
  return out;
}

std::unique_ptr<WeightSource> OpenGgufWeights(const std::string& path) {
  return std::make_unique<GgufWeights>(path);
}

}  // namespace awq
