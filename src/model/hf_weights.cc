// Hugging Face folder weight source: config.json plus safetensors (single file or sharded).
#include <filesystem>

#include "awq/safetensors.h"
#include "model/weight_source.h"

namespace awq {

namespace {

class HfWeights final : public WeightSource {
 public:
  explicit HfWeights(const std::string& dir)
      : dir_(dir),
        config_(LoadHfConfig((std::filesystem::path(dir) / "config.json").string())),
        ckpt_(SafetensorsCheckpoint::Open(dir)) {}

  const std::string& path() const override { return dir_; }
  const ModelConfig& config() const override { return config_; }
  bool Has(const std::string& hf_name) const override { return ckpt_.Has(hf_name); }
  Tensor GetF32(const std::string& hf_name) const override {
    if (!ckpt_.Has(hf_name)) throw Error(dir_ + ": tensor " + hf_name + " is missing");
    return ckpt_.GetF32(hf_name);
  }

 private:
  std::string dir_;
  ModelConfig config_;
  SafetensorsCheckpoint ckpt_;
};

}  // namespace

std::unique_ptr<WeightSource> OpenHfWeights(const std::string& dir) {
  return std::make_unique<HfWeights>(dir);
}

}  // namespace awq
