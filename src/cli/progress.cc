// Progress bar rendering.
#include "cli/progress.h"

#include <cstdio>

namespace awq::cli {

ProgressBar::ProgressBar(std::string label, std::string unit, bool enabled)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      enabled_(enabled),
      start_(std::chrono::steady_clock::now()) {}

std::string FormatDuration(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof(buf), "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof(buf), "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%dh%02dm", static_cast<int>(s) / 3600,
                  static_cast<int>(s) % 3600 / 60);
  }
  return buf;
}

void ProgressBar::Update(int64_t done, int64_t total) {
  if (!enabled_ || total <= 0) return;
  constexpr int kWidth = 30;
  const double frac = static_cast<double>(done) / static_cast<double>(total);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0.0;
  std::string bar(kWidth, ' ');
  const int fill = static_cast<int>(frac * kWidth);
  for (int i = 0; i < fill; ++i) bar[static_cast<size_t>(i)] = '=';
  if (fill < kWidth) bar[static_cast<size_t>(fill)] = '>';
  std::fprintf(stderr, "\r%s [%s] %lld/%lld %s  %.1f %s/s  ETA %s   ", label_.c_str(), bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total), unit_.c_str(), rate,
               unit_.c_str(), FormatDuration(eta).c_str());
  std::fflush(stderr);
}

void ProgressBar::Finish() {
  if (enabled_ && !finished_) std::fprintf(stderr, "\n");
  finished_ = true;
}

}  // namespace awq::cli
