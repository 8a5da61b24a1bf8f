// Rotary position embedding tables (rope_theta, linear, Llama-3 and YaRN frequency scaling, the
// separate base of Gemma 3's sliding-window layers).
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

// Inverse frequencies as transformers computes them (fp32), after rope scaling. `local`: the
// sliding-window layers' (base rope_local_theta, no scaling, as Gemma 3's local rotary module).
std::vector<float> RopeInverseFrequencies(const ModelConfig& config, bool local = false);
// cos/sin tables; YaRN's attention factor multiplies both, as transformers does.
RopeTables BuildRopeTables(const ModelConfig& config, int64_t max_positions, bool local = false);

}  // namespace awq
