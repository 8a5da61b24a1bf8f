#include "kernels/cpu/kernel_race.h"

#include <algorithm>
#include <cstdio>

namespace awq {

Int4Kernel KernelRace::Next(const void* key, bool* timed) {
  std::lock_guard<std::mutex> lock(mu_);
  *timed = false;
  if (winner_) return kernels_[*winner_];
  // A new matrix takes the next index; the kernel of a call alternates with the matrix's call
  // count and with its index, so neighbouring matrices of one token run different kernels and
  // a drift of the host's speed from token to token falls on both alike.
  const auto it = calls_.try_emplace(key, Calls{0, static_cast<int64_t>(calls_.size())}).first;
  const int64_t n = it->second.count++;
  if (n == 0) return kernels_[0];
  *timed = true;
  return kernels_[(n - 1 + it->second.index) % 2];
}

void KernelRace::Record(Int4Kernel k, double cost) {
  std::lock_guard<std::mutex> lock(mu_);
  if (winner_) return;
  const int i = k == kernels_[0] ? 0 : 1;
  costs_[i].push_back(cost);
  if (costs_[0].size() >= kSamples && costs_[1].size() >= kSamples) {
    winner_ = Median(1) < Median(0) ? 1 : 0;
    calls_.clear();
  }
}

double KernelRace::Median(int i) const {
  std::vector<double> v = costs_[i];
  if (v.empty()) return 0;
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  if (v.size() % 2 == 1) return v[mid];
  const double upper = v[mid];
  return (*std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid)) + upper) / 2;
}

Int4Kernel KernelRace::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return kernels_[winner_.value_or(0)];
}

bool KernelRace::Decided() const {
  std::lock_guard<std::mutex> lock(mu_);
  return winner_.has_value();
}

std::string KernelRace::Summary() const {
  std::lock_guard<std::mutex> lock(mu_);
  char buf[160];
  if (winner_) {
    const int w = *winner_, l = 1 - w;
    std::snprintf(buf, sizeof(buf), "%s over %s, median cost %.2fx (%zu + %zu timed calls)",
                  Int4KernelName(kernels_[w]), Int4KernelName(kernels_[l]), Median(w) / Median(l),
                  costs_[w].size(), costs_[l].size());
  } else {
    std::snprintf(buf, sizeof(buf), "%s vs %s: %zu + %zu of %d timed calls",
                  Int4KernelName(kernels_[0]), Int4KernelName(kernels_[1]), costs_[0].size(),
                  costs_[1].size(), kSamples);
  }
  return buf;
}

}  // namespace awq
