// GGUF weight source: Hugging Face names mapped to llama.cpp names, q/k rows un-permuted and
// Gemma's stored 1 + w norms shifted back, by the family's description.
#include <cstring>
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
  return "";
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
    Tensor t = file_.ReadF32(g);
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
  GgufFile file_;
  ModelConfig config_;
  const Architecture& arch_;
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
