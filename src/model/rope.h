// Rotary position embedding tables (rope_theta, linear and Llama-3 frequency scaling).
#pragma once

#include <cstdint>
#include <vector>

#include "awq/model_config.h"

namespace awq {

struct RopeTables {
  int64_t max_positions = 0;
  int64_t half_dim = 0;
  std::vector<float> cos;  // [max_positions, half_dim]
  std::vector<float> sin;  // [max_positions, half_dim]
};

// Inverse frequencies as transformers computes them (fp32), after rope scaling.
std::vector<float> RopeInverseFrequencies(const ModelConfig& config);
RopeTables BuildRopeTables(const ModelConfig& config, int64_t max_positions);

}  // namespace awq
