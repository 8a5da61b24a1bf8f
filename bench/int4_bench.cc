// Int4Linear (4-bit weights, fp32 activations) against fp32 oneDNN sgemm and against
// dequantize-then-sgemm, on SmolLM2-135M and Llama-2-7B linear shapes, with the machine's
// memory-read bandwidth and sgemm peak measured in the same run (limit/*).
//
//   build/bench/int4_bench [--benchmark_filter=4096x4096/m:1] [--benchmark_min_time=0.2]
//
// Names: <impl>/<out>x<in>/m:<rows>, impl in {int4 (fp32 activations), int4_i8act (activations
// quantized to int8: the GEMV, and for m = 512 the int8 GEMM), int4_i8act_cold (the same, the
// weights cycling through 256 MiB of copies so that they come from DRAM as in decode; Llama-7B
// shapes), f32_onednn, f16 (LinearF16 on the LM heads: SmolLM2's and, from DRAM, Llama-2-7B's),
// dequant_sgemm}. Counters: GB/s = weight bytes read per second (4-bit codes + fp16 scales/zeros
// for int4, fp32 weights for sgemm, both for dequant_sgemm); GFLOP/s = 2
// * m * out * in per second. Threads: the global pool (AWQ_NUM_THREADS).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "awq/half.h"
#include "awq/int4_kernels.h"
#include "awq/quantizer.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/f16_linear.h"
#include "kernels/cpu/sgemm.h"

namespace {

// Group size 64 for SmolLM2 (576 is not a multiple of 128), 128 for Llama-2-7B.
struct Shape {
  const char* model;
  int64_t out, in, group_size;
};
constexpr Shape kShapes[] = {
    {"smollm2", 576, 576, 64},     {"smollm2", 1536, 576, 64},   {"smollm2", 576, 1536, 64},
    {"smollm2", 960, 576, 64},     {"smollm2", 3072, 576, 64},  // fused q/k/v and gate/up
    {"smollm2", 49152, 576, 64},   {"llama7b", 4096, 4096, 128}, {"llama7b", 11008, 4096, 128},
    {"llama7b", 4096, 11008, 128},
};
constexpr int64_t kRows[] = {1, 512};

// splitmix64: fast deterministic data for large matrices.
uint64_t Next(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
float Uniform(uint64_t& s) { return static_cast<float>(Next(s) >> 40) / 16777216.0f * 2 - 1; }

awq::QuantizedLinear RandomQuantized(int64_t out, int64_t in, int64_t group_size) {
  uint64_t s = 42;
  awq::QuantizedLinear q;
  q.out = out;
  q.in = in;
  q.params = awq::QuantParams{4, group_size, true};
  q.q.resize(out * in);
  for (auto& c : q.q) c = static_cast<uint8_t>(Next(s) & 15);
  q.scales.resize(out * q.n_groups());
  for (auto& v : q.scales) v = awq::Fp16ToFp32(awq::Fp32ToFp16(0.01f + 0.005f * Uniform(s)));
  q.zeros.resize(q.scales.size());
  for (auto& z : q.zeros) z = static_cast<uint8_t>(Next(s) & 15);
  return q;
}

std::vector<float> RandomVector(int64_t n) {
  uint64_t s = 7;
  std::vector<float> v(n);
  for (auto& e : v) e = Uniform(s);
  return v;
}

void SetCounters(benchmark::State& st, double weight_bytes, double flops) {
  st.counters["weight_GB"] =
      benchmark::Counter(weight_bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GFLOP"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Int4(benchmark::State& st, Shape s, int64_t m, awq::Int4Kernel kernel) {
  const awq::Int4Matrix w = awq::PackInt4(RandomQuantized(s.out, s.in, s.group_size));
  const std::vector<float> x = RandomVector(m * s.in);
  std::vector<float> y(m * s.out);
  auto& pool = awq::ThreadPool::Global();
  for (auto _ : st) {
    awq::Int4Linear(w, x.data(), s.in, m, y.data(), s.out, false, pool, kernel);
    benchmark::DoNotOptimize(y.data());
  }
  SetCounters(st, static_cast<double>(w.bytes()), 2.0 * m * s.out * s.in);
}

// The GEMV with the weights coming from DRAM, as in decode: a matrix of a few MB stays in L3
// between the iterations of BM_Int4, so this one cycles through copies totalling 256 MiB.
void BM_Int4Cold(benchmark::State& st, Shape s, awq::Int4Kernel kernel) {
  const awq::QuantizedLinear q = RandomQuantized(s.out, s.in, s.group_size);
  std::vector<awq::Int4Matrix> copies(1, awq::PackInt4(q));
  const int64_t n = ((256ll << 20) + copies[0].bytes() - 1) / copies[0].bytes();
  while (static_cast<int64_t>(copies.size()) < n) copies.push_back(copies[0]);
  const std::vector<float> x = RandomVector(s.in);
  std::vector<float> y(s.out);
  auto& pool = awq::ThreadPool::Global();
  size_t i = 0;
  for (auto _ : st) {
    awq::Int4Linear(copies[i], x.data(), s.in, 1, y.data(), s.out, false, pool, kernel);
    benchmark::DoNotOptimize(y.data());
    i = (i + 1) % copies.size();
  }
  SetCounters(st, static_cast<double>(copies[0].bytes()), 2.0 * s.out * s.in);
}

void BM_F32(benchmark::State& st, Shape s, int64_t m) {
  const std::vector<float> w = RandomVector(s.out * s.in), x = RandomVector(m * s.in);
  std::vector<float> y(m * s.out);
  auto& pool = awq::ThreadPool::Global();
  for (auto _ : st) {
    awq::LinearF32On(awq::SgemmPath::kOneDnn, x.data(), s.in, w.data(), s.in, y.data(), s.out, m,
                     s.out, s.in, false, pool);
    benchmark::DoNotOptimize(y.data());
  }
  SetCounters(st, 4.0 * s.out * s.in, 2.0 * m * s.out * s.in);
}

// fp16 weights (the LM head of 4-bit checkpoints) through LinearF16.
void BM_F16(benchmark::State& st, Shape s, int64_t m) {
  const std::vector<float> wf = RandomVector(s.out * s.in), x = RandomVector(m * s.in);
  std::vector<uint16_t> w(wf.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = awq::Fp32ToFp16(wf[i]);
  std::vector<float> y(m * s.out);
  auto& pool = awq::ThreadPool::Global();
  for (auto _ : st) {
    awq::LinearF16(x.data(), s.in, w.data(), s.in, y.data(), s.out, m, s.out, s.in, false, pool);
    benchmark::DoNotOptimize(y.data());
  }
  SetCounters(st, 2.0 * s.out * s.in, 2.0 * m * s.out * s.in);
}

// What the model did before the int4 kernels: dequantize the whole linear to fp32, then sgemm.
void BM_DequantSgemm(benchmark::State& st, Shape s, int64_t m) {
  const awq::QuantizedLinear q = RandomQuantized(s.out, s.in, s.group_size);
  const std::vector<float> x = RandomVector(m * s.in);
  std::vector<float> w(s.out * s.in), y(m * s.out);
  auto& pool = awq::ThreadPool::Global();
  for (auto _ : st) {
    awq::DequantizeLinear(q, w.data());
    awq::LinearF32(x.data(), s.in, w.data(), s.in, y.data(), s.out, m, s.out, s.in, false, pool);
    benchmark::DoNotOptimize(y.data());
  }
  const double int4_bytes = s.out * s.in / 2.0 + 4.0 * s.out * q.n_groups();
  SetCounters(st, int4_bytes + 2 * 4.0 * s.out * s.in, 2.0 * m * s.out * s.in);
}

// Machine limits in the same run: reading a 256 MiB array, and a 2048^3 sgemm on all threads.
void BM_MemRead(benchmark::State& st) {
  const int64_t n = (256 << 20) / 4;
  std::vector<float> a(n, 1.0f);
  auto& pool = awq::ThreadPool::Global();
  std::vector<double> part(pool.size());
  for (auto _ : st) {
    pool.ParallelFor(
        n,
        [&](int64_t b, int64_t e, int t) {
          float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
          int64_t i = b;
          for (; i + 8 <= e; i += 8) {
            s0 += a[i];
            s1 += a[i + 1];
            s2 += a[i + 2];
            s3 += a[i + 3];
            s4 += a[i + 4];
            s5 += a[i + 5];
            s6 += a[i + 6];
            s7 += a[i + 7];
          }
          for (; i < e; ++i) s0 += a[i];
          part[t] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
        },
        64);
    benchmark::DoNotOptimize(part.data());
  }
  SetCounters(st, 4.0 * n, 0);
}

void BM_SgemmPeak(benchmark::State& st) {
  const int64_t n = 2048;
  const std::vector<float> a = RandomVector(n * n), b = RandomVector(n * n);
  std::vector<float> c(n * n);
  for (auto _ : st) {
    awq::LinearF32On(awq::SgemmPath::kOneDnn, a.data(), n, b.data(), n, c.data(), n, n, n, n, false,
                     awq::ThreadPool::Global());
    benchmark::DoNotOptimize(c.data());
  }
  SetCounters(st, 0, 2.0 * n * n * n);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("limit/mem_read_256MiB", BM_MemRead)->UseRealTime();
  benchmark::RegisterBenchmark("limit/sgemm_2048", BM_SgemmPeak)->UseRealTime();
  for (const Shape& s : kShapes) {
    for (int64_t m : kRows) {
      const std::string tail =
          "/" + std::to_string(s.out) + "x" + std::to_string(s.in) + "/m:" + std::to_string(m);
      benchmark::RegisterBenchmark(("int4" + tail).c_str(), BM_Int4, s, m, awq::Int4Kernel::kAvx2)
          ->UseRealTime();
      if (m == 1) {
        benchmark::RegisterBenchmark(("int4_i8act" + tail).c_str(), BM_Int4, s, m,
                                     awq::Int4Kernel::kAvx2Int8)
            ->UseRealTime();
        if (std::string(s.model) == "llama7b") {
          benchmark::RegisterBenchmark(("int4_i8act_cold" + tail).c_str(), BM_Int4Cold, s,
                                       awq::Int4Kernel::kAuto)
              ->UseRealTime();
        }
        if (awq::Int4KernelAvailable(awq::Int4Kernel::kAvx512Int8)) {
          benchmark::RegisterBenchmark(("int4_i8act_avx512" + tail).c_str(), BM_Int4, s, m,
                                       awq::Int4Kernel::kAvx512Int8)
              ->UseRealTime();
        }
      } else {
        // int8 activations for prompts (awq generate's default): the AVX2 int8 GEMM.
        benchmark::RegisterBenchmark(("int4_i8act" + tail).c_str(), BM_Int4, s, m,
                                     awq::Int4Kernel::kAvx2Int8)
            ->UseRealTime();
        // The prompt kernels of AVX-512 hosts: the VNNI int8 GEMM and the BF16 GEMM (bf16
        // activations), measured side by side where the CPU runs them.
        if (awq::Int4KernelAvailable(awq::Int4Kernel::kAvx512Int8)) {
          benchmark::RegisterBenchmark(("int4_i8act_avx512" + tail).c_str(), BM_Int4, s, m,
                                       awq::Int4Kernel::kAvx512Int8)
              ->UseRealTime();
        }
        if (awq::Int4KernelAvailable(awq::Int4Kernel::kAvx512Bf16)) {
          benchmark::RegisterBenchmark(("int4_bf16_avx512" + tail).c_str(), BM_Int4, s, m,
                                       awq::Int4Kernel::kAvx512Bf16)
              ->UseRealTime();
        }
        // The oneDNN route for prompts, which kAuto takes on AVX-512 CPUs.
        benchmark::RegisterBenchmark(("int4_sgemm" + tail).c_str(), BM_Int4, s, m,
                                     awq::Int4Kernel::kAvx2Sgemm)
            ->UseRealTime();
      }
      benchmark::RegisterBenchmark(("f32_onednn" + tail).c_str(), BM_F32, s, m)->UseRealTime();
      if (s.out == 49152) {  // the LM head
        benchmark::RegisterBenchmark(("f16" + tail).c_str(), BM_F16, s, m)->UseRealTime();
      }
      benchmark::RegisterBenchmark(("dequant_sgemm" + tail).c_str(), BM_DequantSgemm, s, m)
          ->UseRealTime();
    }
  }
  // Llama-2-7B's fp16 LM head, 262 MB: from DRAM at every call, as in decode.
  benchmark::RegisterBenchmark("f16/32000x4096/m:1", BM_F16, Shape{"llama7b", 32000, 4096, 128},
                               int64_t{1})
      ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("int4_kernel",
                              awq::Int4KernelName(awq::Int4KernelAvailable(awq::Int4Kernel::kAvx2)
                                                      ? awq::Int4Kernel::kAvx2
                                                      : awq::Int4Kernel::kReference));
  benchmark::AddCustomContext("threads", std::to_string(awq::ThreadPool::Global().size()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
