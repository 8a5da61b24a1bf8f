#include "kernels/cpu/kernel_race.h"

#include <algorithm>
#include <cstdio>

#include "awq/error.h"

namespace awq {

namespace {

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  if (v.size() % 2 == 1) return v[mid];
  const double upper = v[mid];
  return (*std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid)) + upper) / 2;
}

}  // namespace

KernelRace::KernelRace(std::vector<RaceArm> arms)
    : arms_(std::move(arms)), counts_(arms_.size(), 0) {
  AWQ_CHECK(arms_.size() >= 2);
}

int KernelRace::Next(const void* key, bool* timed) {
  std::lock_guard<std::mutex> lock(mu_);
  *timed = false;
  if (winner_) return *winner_;
  const auto it = calls_.try_emplace(key, Calls{0, static_cast<int64_t>(calls_.size())}).first;
  const int64_t n = it->second.count++;
  if (n == 0) return 0;
  *timed = true;
  return static_cast<int>((n - 1 + it->second.index) % static_cast<int64_t>(arms_.size()));
}

void KernelRace::Record(int64_t shape, int i, double cost) {
  std::lock_guard<std::mutex> lock(mu_);
  if (winner_) return;
  samples_.push_back({shape, i, cost});
  ++counts_[static_cast<size_t>(i)];
  for (const int c : counts_) {
    if (c < kSamples) return;
  }
  // Each cost relative to its shape's median cost, then the median of those per arm.
  std::unordered_map<int64_t, std::vector<double>> by_shape;
  for (const Sample& s : samples_) by_shape[s.shape].push_back(s.cost);
  std::unordered_map<int64_t, double> scale;
  for (const auto& [k, costs] : by_shape) scale[k] = Median(costs);
  std::vector<std::vector<double>> relative(arms_.size());
  for (const Sample& s : samples_) {
    const double m = scale[s.shape];
    relative[static_cast<size_t>(s.arm)].push_back(m > 0 ? s.cost / m : 1.0);
  }
  relative_.clear();
  for (const auto& r : relative) relative_.push_back(Median(r));
  int best = 0;
  for (int a = 1; a < arms(); ++a) {
    if (relative_[static_cast<size_t>(a)] < relative_[static_cast<size_t>(best)]) best = a;
  }
  winner_ = best;
  calls_.clear();
  samples_.clear();
}

std::string KernelRace::Name(int i) const {
  const RaceArm& a = arm(i);
  // The tuning is named only where the arms differ in it (the decode race).
  bool tuned = false;
  for (const RaceArm& b : arms_) {
    tuned |=
        b.tuning.streams != a.tuning.streams || b.tuning.prefetch_bytes != a.tuning.prefetch_bytes;
  }
  std::string s = Int4KernelName(a.kernel);
  if (tuned) {
    s += " (" + std::to_string(a.tuning.streams) + " streams, " +
         std::to_string(a.tuning.prefetch_bytes) + " B ahead)";
  }
  return s;
}

RaceArm KernelRace::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return arms_[static_cast<size_t>(winner_.value_or(0))];
}

bool KernelRace::Decided() const {
  std::lock_guard<std::mutex> lock(mu_);
  return winner_.has_value();
}

std::string KernelRace::Summary() const {
  std::lock_guard<std::mutex> lock(mu_);
  char buf[96];
  if (winner_) {
    const int w = *winner_;
    int second = w == 0 ? 1 : 0;
    for (int a = 0; a < arms(); ++a) {
      if (a != w && relative_[static_cast<size_t>(a)] < relative_[static_cast<size_t>(second)]) {
        second = a;
      }
    }
    std::snprintf(buf, sizeof(buf), ", median cost %.2fx (%d + %d timed calls, %d arms)",
                  relative_[static_cast<size_t>(w)] / relative_[static_cast<size_t>(second)],
                  counts_[static_cast<size_t>(w)], counts_[static_cast<size_t>(second)], arms());
    return Name(w) + " over " + Name(second) + buf;
  }
  int done = 0;
  for (const int c : counts_) done += std::min(c, kSamples);
  std::snprintf(buf, sizeof(buf), "%d arms: %d of %d timed calls", arms(), done, kSamples * arms());
  return buf;
}

}  // namespace awq
