// Perplexity with the usual protocol: non-overlapping windows of ctx tokens, each evaluated from
// a fresh context; perplexity = exp(sum of NLL / number of predicted tokens).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace awq {

class Model;

struct PerplexityOptions {
  int64_t ctx = 2048;       // window length in tokens
  int64_t max_tokens = -1;  // evaluate only this prefix of the tokens (-1: all)
  // Called after every window with (tokens done, tokens total).
  std::function<void(int64_t, int64_t)> progress;
};

struct PerplexityResult {
  double perplexity = 0.0;
  double nll_sum = 0.0;     // natural log
  int64_t n_predicted = 0;  // ctx - 1 per window
  int64_t n_windows = 0;
  int64_t n_tokens = 0;  // tokens fed through the model
  double seconds = 0.0;
  double tokens_per_second = 0.0;
};

// Throws awq::Error when fewer than ctx tokens are available or ctx < 2.
PerplexityResult EvaluatePerplexity(const Model& model, const std::vector<int32_t>& tokens,
                                    const PerplexityOptions& options);

}  // namespace awq
