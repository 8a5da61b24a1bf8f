// The ordered sgemm (sgemm.h: one fma chain per output, the same bytes on every CPU) against
// oneDNN's sgemm in the same run, single-threaded, on the products quantization and inference
// make: linear layers (x W^T) of SmolLM2-135M and Llama-2-7B at prefill, calibration and decode
// row counts, and the Gram products of the AWQ search (X^T X, trans_a). Each benchmark reports
// GFLOP/s; compare a path's figure with onednn's on the same shape for the ratio.
//   build/bench/sgemm_bench --benchmark_filter=linear
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/sgemm.h"

namespace {

struct Shape {
  const char* name;
  bool ta, tb;
  int64_t m, n, k;
};

// n is a thread's share: LinearF32 splits the output columns between the pool's threads.
const Shape kShapes[] = {
    {"linear/smollm2_q_576x576/m512", false, true, 512, 288, 576},
    {"linear/smollm2_up_1536x576/m512", false, true, 512, 768, 576},
    {"linear/smollm2_down_576x1536/m512", false, true, 512, 288, 1536},
    {"linear/llama7b_4096x4096/m512", false, true, 512, 2048, 4096},
    {"linear/llama7b_4096x4096/m64", false, true, 64, 2048, 4096},
    {"linear/llama7b_4096x4096/m8", false, true, 8, 2048, 4096},
    {"linear/llama7b_4096x4096/m1", false, true, 1, 2048, 4096},
    {"linear/llama7b_up_11008x4096/m1", false, true, 1, 11008, 4096},
    {"gram/xtx_128x128_t4096", true, false, 128, 128, 4096},
    {"attn/scores_512x512_hd64", false, true, 512, 512, 64},
    {"attn/context_512x64_keys512", false, false, 512, 64, 512},
};

void BM_Sgemm(benchmark::State& st, Shape s, awq::SgemmPath path) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> a(static_cast<size_t>(s.m * s.k)), b(static_cast<size_t>(s.k * s.n)),
      c(static_cast<size_t>(s.m * s.n));
  for (float& v : a) v = nd(rng);
  for (float& v : b) v = nd(rng);
  const int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
  for (auto _ : st) {
    awq::SgemmSerialOn(path, s.ta, s.tb, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f,
                       c.data(), s.n);
    benchmark::DoNotOptimize(c.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(s.m * s.n * s.k),
                                              benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

}  // namespace

int main(int argc, char** argv) {
  for (const Shape& s : kShapes) {
    for (awq::SgemmPath p :
         {awq::SgemmPath::kOneDnn, awq::SgemmPath::kAvx2, awq::SgemmPath::kAvx512}) {
      if (!awq::SgemmPathSupported(p)) continue;
      benchmark::RegisterBenchmark((std::string(s.name) + "/" + awq::SgemmPathName(p)).c_str(),
                                   BM_Sgemm, s, p)
          ->UseRealTime()
          ->MinTime(0.3);
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
