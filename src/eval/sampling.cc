// Sampler: temperature, then top-k, then top-p over the survivors, then a draw.
#include "awq/sampling.h"

#include <algorithm>
#include <cmath>

#include "awq/error.h"

namespace awq {

int32_t Argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  if (params.temperature < 0.0f || !std::isfinite(params.temperature)) {
    throw Error("--temperature must be >= 0, got " + std::to_string(params.temperature));
  }
  if (params.top_k < 0) throw Error("--top-k must be >= 0, got " + std::to_string(params.top_k));
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {
    throw Error("--top-p must be in (0, 1], got " + std::to_string(params.top_p));
  }
}

int32_t Sampler::Sample(const float* logits, int64_t n) {
  if (params_.temperature == 0.0f) return Argmax(logits, n);
  candidates_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    candidates_[static_cast<size_t>(i)] = {logits[i] / params_.temperature,
                                           static_cast<int32_t>(i)};
  }
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<long>(keep),
                      candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(keep);
  const float mx = candidates_[0].first;
  double total = 0.0;
  std::vector<double> probs(keep);
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp(static_cast<double>(candidates_[i].first - mx));
    total += probs[i];
  }
  // Nucleus: the smallest prefix (in descending order) whose mass reaches top_p.
  if (params_.top_p < 1.0f) {
    double mass = 0.0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      mass += probs[i] / total;
      if (mass >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
    probs.resize(cut);
    total = 0.0;
    for (double p : probs) total += p;
  }
  std::uniform_real_distribution<double> uni(0.0, total);
  double r = uni(rng_);
  for (size_t i = 0; i < probs.size(); ++i) {
    r -= probs[i];
    if (r <= 0.0) return candidates_[i].second;
  }
  return candidates_[probs.size() - 1].second;
}

}  // namespace awq
