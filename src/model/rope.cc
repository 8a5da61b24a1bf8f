// Rotary tables, computed the way transformers computes them so logits match to fp32 rounding.
#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "awq/error.h"

namespace awq {

namespace {

// transformers' get_mscale: the YaRN attention factor for a context extension `scale`.
double YarnMscale(double scale) { return scale <= 1 ? 1.0 : 0.1 * std::log(scale) + 1.0; }

// The dimension index at which a frequency makes `rotations` turns over `max_pos` positions.
double YarnCorrectionDim(double rotations, int64_t dim, double base, double max_pos) {
  return (static_cast<double>(dim) * std::log(max_pos / (rotations * 2 * M_PI))) /
         (2 * std::log(base));
}

}  // namespace

std::vector<float> RopeInverseFrequencies(const ModelConfig& config, bool local) {
  const int64_t hd = config.head_dim;
  const double theta =
      local && config.rope_local_theta > 0 ? config.rope_local_theta : config.rope_theta;
  std::vector<float> inv(static_cast<size_t>(hd / 2));
  std::vector<float> pos_freq(inv.size());
  for (int64_t i = 0; i < hd / 2; ++i) {
    // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), in fp32.
    const float expo = static_cast<float>(2 * i) / static_cast<float>(hd);
    const float p = std::pow(static_cast<float>(theta), expo);
    pos_freq[static_cast<size_t>(i)] = p;
    inv[static_cast<size_t>(i)] = 1.0f / p;
  }
  if (local && config.rope_local_theta > 0) return inv;  // Gemma 3's local layers: no scaling
  const RopeScaling& rs = config.rope_scaling;
  if (rs.type == RopeScalingType::kYarn) {
    // transformers' _compute_yarn_parameters: interpolate (divide by factor) the low frequencies,
    // keep the high ones, ramp linearly between the correction dims of beta_fast and beta_slow.
    const double max_pos = static_cast<double>(rs.original_max_position_embeddings);
    double low = YarnCorrectionDim(rs.beta_fast, hd, theta, max_pos);
    double high = YarnCorrectionDim(rs.beta_slow, hd, theta, max_pos);
    if (rs.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(hd - 1));
    if (low == high) high += 0.001;
    const float flow = static_cast<float>(low), fhigh = static_cast<float>(high);
    for (int64_t i = 0; i < hd / 2; ++i) {
      // fp32 as torch: ramp = clamp((i - low) / (high - low), 0, 1); extrapolation weight 1 - ramp.
      float ramp = (static_cast<float>(i) - flow) / (fhigh - flow);
      ramp = std::min(1.0f, std::max(0.0f, ramp));
      const float extra = 1.0f - ramp;
      const float p = pos_freq[static_cast<size_t>(i)];
      const float interp = 1.0f / (static_cast<float>(rs.factor) * p);
      inv[static_cast<size_t>(i)] = interp * (1.0f - extra) + (1.0f / p) * extra;
    }
    return inv;
  }
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

RopeTables BuildRopeTables(const ModelConfig& config, int64_t max_positions, bool local) {
  AWQ_CHECK(config.head_dim > 0 && config.head_dim % 2 == 0);
  RopeTables t;
  t.max_positions = max_positions;
  t.half_dim = config.head_dim / 2;
  const std::vector<float> inv = RopeInverseFrequencies(config, local);
  const RopeScaling& rs = config.rope_scaling;
  const bool yarn = rs.type == RopeScalingType::kYarn && !(local && config.rope_local_theta > 0);
  const float attention_factor = !yarn ? 1.0f
                                 : rs.attention_factor > 0
                                     ? static_cast<float>(rs.attention_factor)
                                     : static_cast<float>(YarnMscale(rs.factor));
  t.cos.resize(static_cast<size_t>(max_positions * t.half_dim));
  t.sin.resize(t.cos.size());
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int64_t i = 0; i < t.half_dim; ++i) {
      // The angle is an fp32 product as in transformers; cos/sin of it rounded to fp32.
      const float angle = static_cast<float>(p) * inv[static_cast<size_t>(i)];
      float c = static_cast<float>(std::cos(double{angle}));
      float s = static_cast<float>(std::sin(double{angle}));
      if (yarn) {
        c *= attention_factor;
        s *= attention_factor;
      }
      t.cos[static_cast<size_t>(p * t.half_dim + i)] = c;
      t.sin[static_cast<size_t>(p * t.half_dim + i)] = s;
    }
  }
  return t;
}

}  // namespace awq
