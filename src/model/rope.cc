// Rotary tables, computed the way transformers computes them so logits match to fp32 rounding.
#include "model/rope.h"

#include <cmath>

#include "awq/error.h"

namespace awq {

std::vector<float> RopeInverseFrequencies(const ModelConfig& config) {
  const int64_t hd = config.head_dim;
  std::vector<float> inv(static_cast<size_t>(hd / 2));
  for (int64_t i = 0; i < hd / 2; ++i) {
    // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), in fp32.
    const float expo = static_cast<float>(2 * i) / static_cast<float>(hd);
    const float p = std::pow(static_cast<float>(config.rope_theta), expo);
    inv[static_cast<size_t>(i)] = 1.0f / p;
  }
  const RopeScaling& rs = config.rope_scaling;
  if (rs.type == RopeScalingType::kLinear) {
    for (float& f : inv) f = static_cast<float>(f / rs.factor);
  } else if (rs.type == RopeScalingType::kLlama3) {
    // Long wavelengths are slowed down by `factor`, short ones kept, the band between blended.
    const double old_ctx = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wavelen = old_ctx / rs.low_freq_factor;
    const double high_wavelen = old_ctx / rs.high_freq_factor;
    for (float& f : inv) {
      const double wavelen = 2.0 * M_PI / f;
      double g = f;
      if (wavelen > low_wavelen) {
        g = f / rs.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        g = (1.0 - smooth) * f / rs.factor + smooth * f;
      }
      f = static_cast<float>(g);
    }
  }
  return inv;
}

RopeTables BuildRopeTables(const ModelConfig& config, int64_t max_positions) {
  AWQ_CHECK(config.head_dim > 0 && config.head_dim % 2 == 0);
  RopeTables t;
  t.max_positions = max_positions;
  t.half_dim = config.head_dim / 2;
  const std::vector<float> inv = RopeInverseFrequencies(config);
  t.cos.resize(static_cast<size_t>(max_positions * t.half_dim));
  t.sin.resize(t.cos.size());
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int64_t i = 0; i < t.half_dim; ++i) {
      // The angle is an fp32 product as in transformers; cos/sin of it rounded to fp32.
      const float angle = static_cast<float>(p) * inv[static_cast<size_t>(i)];
      t.cos[static_cast<size_t>(p * t.half_dim + i)] = static_cast<float>(std::cos(double{angle}));
      t.sin[static_cast<size_t>(p * t.half_dim + i)] = static_cast<float>(std::sin(double{angle}));
    }
  }
  return t;
}

}  // namespace awq
