// A one-line progress bar on stderr with rate and ETA, redrawn in place.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace awq::cli {

class ProgressBar {
 public:
  // `unit` names what is counted ("tok"); the bar is silent when `enabled` is false.
  ProgressBar(std::string label, std::string unit, bool enabled = true);
  void Update(int64_t done, int64_t total);
  // Ends the line (once).
  void Finish();

 private:
  std::string label_, unit_;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
};

// "1m05s", "12.3s".
std::string FormatDuration(double seconds);

}  // namespace awq::cli
