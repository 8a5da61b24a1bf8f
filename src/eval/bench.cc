// Memory bandwidth loops and the prefill/decode timing of BenchModel.
#include "awq/bench.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "eval/bench_loops.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/sgemm.h"

namespace awq {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Chunks of 64 Ki floats (256 KiB): enough per task that scheduling costs nothing.
constexpr int64_t kGrain = 1 << 16;
// Repetitions of each loop in a measurement between two benchmark runs.
constexpr int kProbeReps = 3;

void Triad(float* a, const float* b, const float* c, float s, int64_t n) {
#if defined(__x86_64__)
  if (CpuHasAvx2Fma()) return TriadAvx2(a, b, c, s, n);
#endif
  for (int64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
}

float Sum(const float* p, int64_t n) {
#if defined(__x86_64__)
  if (CpuHasAvx2Fma()) return SumAvx2(p, n);
#endif
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += p[i + j];
  }
  for (; i < n; ++i) acc[0] += p[i];
  float sum = 0;
  for (float v : acc) sum += v;
  return sum;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

}  // namespace

BandwidthProbe::BandwidthProbe(ThreadPool& pool, int64_t bytes_per_array)
    : pool_(pool),
      n_(bytes_per_array / 4),
      a_(new float[static_cast<size_t>(std::max<int64_t>(n_, 1))]),
      b_(new float[static_cast<size_t>(std::max<int64_t>(n_, 1))]),
      c_(new float[static_cast<size_t>(std::max<int64_t>(n_, 1))]) {
  AWQ_CHECK(n_ >= 1);
  // Uninitialised buffers, first touched by the threads that later stream them.
  pool_.ParallelFor(
      n_,
      [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; ++i) {
          a_[i] = 0.0f;
          b_[i] = 1.0f;
          c_[i] = 2.0f;
        }
      },
      kGrain);
}

MemoryBandwidth BandwidthProbe::Measure(int reps) const {
  AWQ_CHECK(reps >= 1);
  MemoryBandwidth r;
  r.bytes_per_array = n_ * 4;
  r.threads = pool_.size();
  const float s = 3.0f;
  for (int rep = 0; rep < reps; ++rep) {
    const Clock::time_point t0 = Clock::now();
    pool_.ParallelFor(
        n_,
        [&](int64_t i0, int64_t i1, int) {
          Triad(a_.get() + i0, b_.get() + i0, c_.get() + i0, s, i1 - i0);
        },
        kGrain);
    r.triad_gb_per_s = std::max(r.triad_gb_per_s, 3.0 * 4.0 * n_ / Seconds(t0) / 1e9);
  }
  std::vector<float> sums(static_cast<size_t>(pool_.size()) * 16);
  for (int rep = 0; rep < reps; ++rep) {
    const Clock::time_point t0 = Clock::now();
    pool_.ParallelFor(
        n_,
        [&](int64_t i0, int64_t i1, int t) {
          sums[static_cast<size_t>(t) * 16] += Sum(a_.get() + i0, i1 - i0);
        },
        kGrain);
    r.read_gb_per_s = std::max(r.read_gb_per_s, 4.0 * n_ / Seconds(t0) / 1e9);
  }
  volatile float sink = sums[0];  // keeps the read loop from being optimised away
  (void)sink;
  return r;
}

double BandwidthProbe::ReadSeconds(int64_t bytes) {
  AWQ_CHECK(bytes >= 4);
  const float* arrays[3] = {a_.get(), b_.get(), c_.get()};
  std::vector<float> sums(static_cast<size_t>(pool_.size()) * 16);
  const Clock::time_point t0 = Clock::now();
  for (int64_t left = bytes / 4; left > 0;) {
    const int64_t array = cursor_ / n_, i0 = cursor_ % n_;
    const int64_t len = std::min(left, n_ - i0);
    const float* p = arrays[array] + i0;
    pool_.ParallelFor(
        len,
        [&](int64_t b, int64_t e, int t) {
          sums[static_cast<size_t>(t) * 16] += Sum(p + b, e - b);
        },
        kGrain);
    left -= len;
    cursor_ = (cursor_ + len) % (3 * n_);
  }
  const double seconds = Seconds(t0);
  sink_ += sums[0];  // keeps the read loop from being optimised away
  return seconds;
}

std::string SgemmInUse() {
  const SgemmPath p = ActiveSgemmPath();
  return std::string(SgemmPathName(p)) + (p == SgemmPath::kOneDnn ? "" : " (ordered)");
}

double MeasureSgemmGflops(ThreadPool& pool, int reps) {
  constexpr int64_t kN = 2048;
  std::vector<float> a(static_cast<size_t>(kN * kN)), b(a.size()), c(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(i % 7) * 0.25f;
    b[i] = static_cast<float>(i % 5) * 0.5f;
  }
  double best = 1e30;
  for (int r = 0; r < reps + 1; ++r) {  // the first call warms up
    const auto t0 = std::chrono::steady_clock::now();
    LinearF32(a.data(), kN, b.data(), kN, c.data(), kN, kN, kN, kN, false, pool);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) best = std::min(best, s);
  }
  return 2.0 * kN * kN * kN / best / 1e9;
}

MemoryBandwidth MeasureMemoryBandwidth(ThreadPool& pool, int64_t bytes_per_array, int reps) {
  AWQ_CHECK(bytes_per_array >= 4 && reps >= 1);
  return BandwidthProbe(pool, bytes_per_array).Measure(reps);
}

namespace {

// Bytes of fp16 KV cache one position holds (keys and values of every layer): what a decode step
// reads per position it attends to.
int64_t KvBytesPerPosition(const ModelConfig& c) {
  return 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 2;
}

// One repetition: prefill of the prompt, then gen_tokens greedy decode steps; appends the runs.
// With r null (the warm-up) nothing is recorded. With `paired` (a probe), each decode step is
// timed alone and followed by a read pass over its weight bytes (token_paired_read).
void RunOnce(const Model& model, const BenchOptions& o, const std::vector<int32_t>& prompt,
             BenchResult* r, BandwidthProbe* paired = nullptr) {
  const ModelConfig& c = model.config();
  const int64_t d = c.hidden_size, v = c.vocab_size;
  std::vector<float> hidden(static_cast<size_t>(o.prompt_tokens * d)),
      logits(static_cast<size_t>(v));
  KvCache cache = model.NewCache(o.prompt_tokens + o.gen_tokens);
  Clock::time_point t0 = Clock::now();
  model.Forward(prompt.data(), o.prompt_tokens, cache, hidden.data());
  model.Logits(hidden.data() + (o.prompt_tokens - 1) * d, 1, logits.data());
  if (r != nullptr) r->prefill_runs.push_back(static_cast<double>(o.prompt_tokens) / Seconds(t0));
  const int64_t weights = model.DecodeWeightBytes();
  const int64_t kv_per_position = KvBytesPerPosition(c);
  double decode_seconds = 0;
  t0 = Clock::now();
  for (int64_t i = 0; i < o.gen_tokens; ++i) {
    const int32_t next =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    model.Forward(&next, 1, cache, hidden.data());
    model.Logits(hidden.data(), 1, logits.data());
    if (paired == nullptr || r == nullptr) continue;
    const double step = Seconds(t0);
    const double read = paired->ReadSeconds(weights);
    decode_seconds += step;
    const double kv = static_cast<double>((o.prompt_tokens + i + 1) * kv_per_position);
    r->token_read_shares.push_back(read / step);
    r->token_read_shares_with_kv.push_back(read / step * (1.0 + kv / static_cast<double>(weights)));
    t0 = Clock::now();
  }
  if (paired == nullptr || r == nullptr) decode_seconds = Seconds(t0);
  if (r != nullptr) r->decode_runs.push_back(static_cast<double>(o.gen_tokens) / decode_seconds);
}

}  // namespace

std::vector<BenchResult> BenchModels(const std::vector<const Model*>& models,
                                     const BenchOptions& o) {
  if (o.prompt_tokens < 1 || o.gen_tokens < 1 || o.reps < 1) {
    throw Error("bench: prompt tokens, generated tokens and repetitions must be positive (got " +
                std::to_string(o.prompt_tokens) + ", " + std::to_string(o.gen_tokens) + ", " +
                std::to_string(o.reps) + ")");
  }
  std::vector<BenchResult> results(models.size());
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i = 0; i < models.size(); ++i) {
    const ModelConfig& c = models[i]->config();
    std::vector<int32_t> prompt(static_cast<size_t>(o.prompt_tokens));
    uint64_t state = o.seed;
    for (int32_t& t : prompt) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      t = static_cast<int32_t>((state >> 33) % static_cast<uint64_t>(c.vocab_size));
    }
    prompts.push_back(std::move(prompt));
    results[i].prompt_tokens = o.prompt_tokens;
    results[i].gen_tokens = o.gen_tokens;
    results[i].weight_bytes_per_token = models[i]->DecodeWeightBytes();
    const double mean_positions = static_cast<double>(o.prompt_tokens) + (o.gen_tokens + 1) / 2.0;
    results[i].kv_bytes_per_token =
        static_cast<int64_t>(mean_positions * static_cast<double>(KvBytesPerPosition(c)));
  }
  if (o.warmup) {
    BenchOptions w = o;
    w.gen_tokens = 1;
    for (size_t i = 0; i < models.size(); ++i) RunOnce(*models[i], w, prompts[i], nullptr);
  }
  std::unique_ptr<BandwidthProbe> probe;
  MemoryBandwidth before;
  if (o.measure_bandwidth) {
    probe = std::make_unique<BandwidthProbe>(ThreadPool::Global());
    before = probe->Measure(kProbeReps);
  }
  for (int rep = 0; rep < o.reps; ++rep) {
    for (size_t i = 0; i < models.size(); ++i) {
      BenchResult& r = results[i];
      RunOnce(*models[i], o, prompts[i], &r, o.token_paired_read ? probe.get() : nullptr);
      if (!probe) continue;
      const MemoryBandwidth after = probe->Measure(kProbeReps);
      r.triad_runs.push_back(std::max(before.triad_gb_per_s, after.triad_gb_per_s));
      r.read_runs.push_back(std::max(before.read_gb_per_s, after.read_gb_per_s));
      before = after;
    }
  }
  for (BenchResult& r : results) {
    r.prefill_tokens_per_s = Median(r.prefill_runs);
    r.decode_tokens_per_s = Median(r.decode_runs);
    r.decode_weight_gb_per_s =
        static_cast<double>(r.weight_bytes_per_token) * r.decode_tokens_per_s / 1e9;
    if (!probe) continue;
    std::vector<double> decode_gb_per_s;
    for (double t : r.decode_runs) {
      decode_gb_per_s.push_back(static_cast<double>(r.weight_bytes_per_token) * t / 1e9);
    }
    r.decode_share_of_triad = MedianPairedRatio(decode_gb_per_s, r.triad_runs);
    r.decode_share_of_read = MedianPairedRatio(decode_gb_per_s, r.read_runs);
    r.decode_token_share_of_read = Median(r.token_read_shares);
    r.decode_token_share_of_read_with_kv = Median(r.token_read_shares_with_kv);
  }
  return results;
}

BenchResult BenchModel(const Model& model, const BenchOptions& o) {
  return BenchModels({&model}, o)[0];
}

double MedianPairedRatio(const std::vector<double>& a, const std::vector<double>& b) {
  AWQ_CHECK(a.size() == b.size());
  std::vector<double> r;
  for (size_t i = 0; i < a.size(); ++i) r.push_back(a[i] / b[i]);
  return Median(r);
}

}  // namespace awq
