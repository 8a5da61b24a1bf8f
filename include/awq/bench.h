// Throughput measurement: the machine's memory bandwidth (a STREAM-like triad and a plain read)
// and a model's prefill and decode speed with the bytes of weights each decode step reads, so a
// decode figure can be stated as a share of the bandwidth measured in the same run.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace awq {

class Model;
class ThreadPool;

struct MemoryBandwidth {
  int64_t bytes_per_array = 0;
  int threads = 0;
  // STREAM's triad a[i] = b[i] + s * c[i], counted as STREAM counts it: 3 arrays x 4 bytes per
  // element (the write-allocate read of a is not counted). Best of the repetitions.
  double triad_gb_per_s = 0;
  // Summing one array: 4 bytes per element. Best of the repetitions.
  double read_gb_per_s = 0;
};

// The triad and read loops over arrays allocated (and first touched, by the threads that stream
// them) once, so that a measurement can sit between every two benchmark runs for ~0.1 s each.
class BandwidthProbe {
 public:
  // Arrays of `bytes_per_array` (default 256 MiB, several times any L3).
  explicit BandwidthProbe(ThreadPool& pool, int64_t bytes_per_array = 256ll << 20);
  // Runs both loops `reps` times each on the pool; the best repetition of each.
  MemoryBandwidth Measure(int reps) const;
  // One pass of the read loop over `bytes` (at least 4) of the three arrays, taken in turn from
  // where the previous call stopped (so the bytes come from DRAM once `bytes` and the arrays
  // exceed the caches); the seconds it took.
  double ReadSeconds(int64_t bytes);

 private:
  ThreadPool& pool_;
  int64_t n_;  // floats per array
  std::unique_ptr<float[]> a_, b_, c_;
  int64_t cursor_ = 0;  // ReadSeconds' position in the arrays a_, b_, c_ laid end to end
  float sink_ = 0;
};

// One BandwidthProbe's measurement: both loops on `pool`, `reps` times each.
MemoryBandwidth MeasureMemoryBandwidth(ThreadPool& pool, int64_t bytes_per_array = 256ll << 20,
                                       int reps = 5);

// The fp32 GEMM rate of the machine as the quantizer's searches call it: LinearF32 (the sgemm in
// use, per thread) on m x n x k = 2048 x 2048 x 2048 over `pool`, best of `reps`, in GFLOP/s.
double MeasureSgemmGflops(ThreadPool& pool, int reps = 3);

// The sgemm the fp32 products run (AWQ_SGEMM or the automatic choice): "avx2 (ordered)",
// "onednn", ...; benchmarks print it next to fp32 figures (docs/KERNELS.md has their speeds).
std::string SgemmInUse();

struct BenchOptions {
  int64_t prompt_tokens = 512;  // prefill: one forward over a prompt of this many tokens
  int64_t gen_tokens = 128;     // decode: this many single-token steps after the prompt
  int reps = 3;                 // repetitions of each; the median is reported
  uint64_t seed = 7;            // of the random prompt ids
  // Measure the memory bandwidth (BandwidthProbe, 3 repetitions of each loop) before the first
  // run and after every run, and pair each run with the better of its two neighbours: a shared
  // host's bandwidth drifts by a quarter within a minute, so a share of one figure measured
  // minutes apart says as much about the drift as about the kernels.
  bool measure_bandwidth = false;
  // Before the timed runs, one untimed prefill of the prompt and one decode step per model (as
  // llama-bench warms up), so the first timed run does not pay for first-touch page faults of
  // scratch buffers; matters when reps is 1, as in bench/peers' interleaved runs.
  bool warmup = false;
  // With measure_bandwidth: after every decode step, one pass of the read loop over as many bytes
  // as the step's weights (BandwidthProbe::ReadSeconds), so each step's speed is set against the
  // bandwidth of the next few tens of milliseconds rather than of a measurement seconds away. On
  // the Zen 3 VMs the read loop's rate moves by a quarter to a half between minutes; a pair of
  // neighbours in time sees the same phase. Doubles the decode's wall time.
  bool token_paired_read = false;
};

struct BenchResult {
  int64_t prompt_tokens = 0;
  int64_t gen_tokens = 0;
  // Median over the repetitions; the runs themselves below.
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
  std::vector<double> prefill_runs, decode_runs;  // tokens/s of each repetition
  // Model::DecodeWeightBytes(): the weights one decode step reads.
  int64_t weight_bytes_per_token = 0;
  // weight_bytes_per_token * decode_tokens_per_s / 1e9.
  double decode_weight_gb_per_s = 0;
  // The fp16 KV cache a decode step reads besides the weights, averaged over the decode steps
  // (keys and values of every layer at prompt + i + 1 positions for step i).
  int64_t kv_bytes_per_token = 0;
  // With BenchOptions::measure_bandwidth: the bandwidth paired with each run (the better of the
  // measurements just before and just after it), and the median over the runs of
  // (that run's decode weight GB/s) / (its paired bandwidth).
  std::vector<double> triad_runs, read_runs;
  double decode_share_of_triad = 0, decode_share_of_read = 0;
  // With BenchOptions::token_paired_read: per decode step, (weight bytes / step time) / (weight
  // bytes / time of the read pass right after it), over every step of every run; and the same
  // with the step's KV cache bytes added to the numerator. Their medians.
  std::vector<double> token_read_shares, token_read_shares_with_kv;
  double decode_token_share_of_read = 0, decode_token_share_of_read_with_kv = 0;
};

// Prefill: a fresh cache, Forward over the prompt and the last position's logits. Decode: after
// that prompt, gen_tokens steps of Forward(1 token) + full logits + argmax (the work of greedy
// generation). Token ids are pseudo-random, so any weights (even random ones) can be timed.
// Throws awq::Error when prompt + gen tokens exceed the model's context.
BenchResult BenchModel(const Model& model, const BenchOptions& options);

// BenchModel for several models with their repetitions interleaved (rep 1 of every model, then
// rep 2, ...), so that a shared host's slow and fast phases fall on all of them alike and the
// ratio of two models' runs of the same repetition compares like with like.
std::vector<BenchResult> BenchModels(const std::vector<const Model*>& models,
                                     const BenchOptions& options);

// The median over repetitions of a's run / b's run (prefill or decode tokens/s), pairing the runs
// of the same repetition.
double MedianPairedRatio(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace awq
