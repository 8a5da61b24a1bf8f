// Hugging Face folder weight source: config.json plus safetensors (single file or sharded).
#include <filesystem>
#include <optional>

#include "awq/awq_checkpoint.h"
#include "awq/safetensors.h"
#include "model/weight_source.h"

namespace awq {

namespace {

class HfWeights final : public WeightSource {
 public:
  explicit HfWeights(const std::string& dir)
      : dir_(dir),
        config_(LoadHfConfig((std::filesystem::path(dir) / "config.json").string())),
        ckpt_(SafetensorsCheckpoint::Open(dir)),
        awq_(ReadAwqQuantConfig(dir)) {}

  const std::string& path() const override { return dir_; }
  const ModelConfig& config() const override { return config_; }
  bool Has(const std::string& hf_name) const override {
    return ckpt_.Has(hf_name) || !QuantizedModule(hf_name).empty();
  }
  Tensor GetStored(const std::string& hf_name) const override {
    if (ckpt_.Has(hf_name)) {
      const DType t = ckpt_.dtype(hf_name);
      if (t == DType::kF32 || t == DType::kF16 || t == DType::kBF16) {
        Tensor stored = ckpt_.Get(hf_name);
        CheckFiniteWeights(ckpt_.FileOf(hf_name).source(), hf_name, stored);
        return stored;
      }
    }
    return GetF32(hf_name);
  }
  void ReleasePages(const std::string& hf_name) const override {
    if (ckpt_.Has(hf_name)) ckpt_.FileOf(hf_name).ReleasePages(hf_name);
  }
  Tensor GetF32(const std::string& hf_name) const override {
    if (ckpt_.Has(hf_name)) {
      Tensor t = ckpt_.GetF32(hf_name);
      // The copy is made: the mapped bytes need not stay resident.
      ckpt_.FileOf(hf_name).ReleasePages(hf_name);
      CheckFiniteWeights(ckpt_.FileOf(hf_name).source(), hf_name, t);
      return t;
    }
    // AWQ checkpoints store "<module>.qweight/.qzeros/.scales" instead of "<module>.weight".
    const std::string module = QuantizedModule(hf_name);
    if (!module.empty()) {
      Tensor t = DequantizeAwqWeight(ckpt_, module, *awq_);
      CheckFiniteWeights(dir_, hf_name + " (dequantized from " + module + ".scales)", t);
      return t;
    }
    throw Error(dir_ + ": tensor " + hf_name + " is missing");
  }

 private:
  // "model.layers.0.mlp.up_proj" for "model.layers.0.mlp.up_proj.weight" when the checkpoint is
  // AWQ and holds that module's qweight; "" otherwise.
  std::string QuantizedModule(const std::string& hf_name) const {
    static const std::string kSuffix = ".weight";
    if (!awq_ || hf_name.size() <= kSuffix.size() ||
        hf_name.compare(hf_name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
      return "";
    }
    const std::string module = hf_name.substr(0, hf_name.size() - kSuffix.size());
    return ckpt_.Has(module + ".qweight") ? module : "";
  }

  std::string dir_;
  ModelConfig config_;
  SafetensorsCheckpoint ckpt_;
  std::optional<QuantConfig> awq_;
};

}  // namespace

std::unique_ptr<WeightSource> OpenHfWeights(const std::string& dir) {
  return std::make_unique<HfWeights>(dir);
}

}  // namespace awq
