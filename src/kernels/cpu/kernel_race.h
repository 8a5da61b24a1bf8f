// A choice between two int4 kernels that compute the same bits, made by timing both on the work
// itself: on a CPU with AVX-512 VNNI the VNNI and the AVX2 int8 kernels give identical results
// (docs/KERNELS.md), and which is faster depends on the host, not on the instruction set.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "awq/int4_kernels.h"

namespace awq {

class KernelRace {
 public:
  // Timed calls per kernel before the choice.
  static constexpr int kSamples = 32;

  KernelRace(Int4Kernel first, Int4Kernel second) : kernels_{first, second} {}

  // The kernel for the next call on the matrix `key`. Its first call runs `first` untimed (the
  // weights come cold from memory, and the page faults of a fresh mapping would decide the race);
  // its later calls alternate between the two (each matrix weighs the same on both sides) and
  // are timed (*timed = true) until the choice is made; from then on the winner runs, untimed.
  Int4Kernel Next(const void* key, bool* timed);
  // The cost of a timed call (seconds per unit of work: per weight byte and row of x). Once both
  // kernels have kSamples costs, the one with the lower median wins (`first` on a tie).
  void Record(Int4Kernel k, double cost);

  // The winner once chosen, else `first`.
  Int4Kernel Current() const;
  bool Decided() const;
  // "avx512-int8 over avx2-int8, median cost 0.91x (32 + 32 timed calls)", or what is still
  // running ("avx512-int8 vs avx2-int8: 5 + 4 of 32 timed calls").
  std::string Summary() const;

 private:
  double Median(int i) const;

  mutable std::mutex mu_;
  Int4Kernel kernels_[2];
  struct Calls {
    int64_t count;  // calls on the matrix so far
    int64_t index;  // order of its first call among the matrices
  };
  std::unordered_map<const void*, Calls> calls_;
  std::vector<double> costs_[2];
  std::optional<int> winner_;
};

}  // namespace awq
