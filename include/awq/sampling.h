// Next-token selection: greedy, or temperature / top-k / top-p sampling from a seeded generator.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace awq {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy (argmax)
  int top_k = 0;             // 0: no top-k cut
  float top_p = 1.0f;        // 1: no nucleus cut
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks a token from logits [n]. Greedy ties go to the lowest id, as torch.argmax does.
  int32_t Sample(const float* logits, int64_t n);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

// Index of the largest value (lowest index on ties).
int32_t Argmax(const float* x, int64_t n);

}  // namespace awq
