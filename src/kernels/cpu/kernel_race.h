// A choice among ways of running an int4 product that compute the same bits, made by timing them
// on the work itself. Decode races the int8 GEMV's streams per core and prefetch distance (and,
// on a CPU with AVX-512 VNNI, the VNNI against the AVX2 kernel); prompts race the VNNI against
// the AVX2 int8 GEMM. Which is faster depends on the host's memory system, not on the
// instruction set (docs/KERNELS.md, *Per-host choice*).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "awq/int4_kernels.h"
#include "kernels/cpu/int4_layout.h"

namespace awq {

// One contestant: a kernel and, for the int8 GEMVs on blocks of 16, how it walks the weights.
struct RaceArm {
  Int4Kernel kernel;
  GemvTuning tuning;
};

class KernelRace {
 public:
  // Timed calls per arm before the choice.
  static constexpr int kSamples = 32;

  // At least two arms; the first is the default (it runs every matrix's first call and wins
  // ties).
  explicit KernelRace(std::vector<RaceArm> arms);

  // The arm (an index into arms()) for the next call on the matrix `key`. Its first call runs arm
  // 0 untimed (the weights come cold from memory, and the page faults of a fresh mapping would
  // decide the race); its later calls rotate through the arms (each matrix weighs the same on
  // every arm) and are timed (*timed = true) until the choice is made; from then on the winner
  // runs, untimed. Neighbouring matrices start the rotation at different arms, so a drift of the
  // host's speed from token to token falls on every arm alike.
  int Next(const void* key, bool* timed);
  const RaceArm& arm(int i) const { return arms_[static_cast<size_t>(i)]; }
  int arms() const { return static_cast<int>(arms_.size()); }
  // The cost of a timed call of arm i on a matrix of shape `shape` (any number that tells shapes
  // apart; seconds per unit of work: per weight byte and row of x). Once every arm has kSamples
  // costs, each cost is divided by the median cost of its shape over all timed calls (shapes
  // differ in cost per byte by more than arms do, and each arm meets a different mix of them; a
  // model's layers repeat a few shapes, so each shape has many calls where each matrix has one
  // or two), and the arm with the lowest median of these wins (the earlier arm on a tie).
  void Record(int64_t shape, int i, double cost);

  // The winner once chosen, else arm 0.
  RaceArm Current() const;
  bool Decided() const;
  // "avx2-int8 (4 streams, 512 B ahead) over avx2-int8 (4 streams, 1024 B ahead), median cost
  // 0.97x (32 + 32 timed calls, 4 arms)": the winner against the runner-up; or what is still
  // running ("5 arms: 17 of 160 timed calls").
  std::string Summary() const;

 private:
  std::string Name(int i) const;

  mutable std::mutex mu_;
  std::vector<RaceArm> arms_;
  struct Calls {
    int64_t count;  // calls on the matrix so far
    int64_t index;  // order of its first call among the matrices
  };
  std::unordered_map<const void*, Calls> calls_;
  struct Sample {
    int64_t shape;
    int arm;
    double cost;
  };
  std::vector<Sample> samples_;
  std::vector<int> counts_;       // timed calls per arm
  std::vector<double> relative_;  // per arm, once decided: median cost relative to its matrices
  std::optional<int> winner_;
};

}  // namespace awq
