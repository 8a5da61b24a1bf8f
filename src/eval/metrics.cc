// Quantization metrics: tensor error statistics (streaming, threaded), linear output errors,
// checkpoint sizes on disk, model-vs-model next-token comparisons, and threshold checks.
#include "awq/metrics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "awq/awq_checkpoint.h"
#include "awq/gguf.h"
#include "awq/model.h"
#include "awq/safetensors.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/sgemm.h"

namespace awq {

namespace {

// Elements per chunk of CompareTensors: fixed, so results do not depend on the thread count.
constexpr int64_t kMetricChunk = 1 << 16;
// Rows of outputs or logits computed at once (256 x 49152 floats = 48 MiB of logits per model).
constexpr int64_t kRowBlock = 256;

std::string Fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

}  // namespace

void TensorMetricsAccumulator::Add(const float* a, const float* b, int64_t n) {
  if (n <= 0) return;
  // Two passes over the chunk (means, then deviations), then a pairwise merge.
  double sa = 0, sb = 0;
  for (int64_t i = 0; i < n; ++i) {
    sa += a[i];
    sb += b[i];
  }
  TensorMetricsAccumulator c;
  c.n_ = n;
  c.mean_a_ = sa / static_cast<double>(n);
  c.mean_b_ = sb / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) {
    const double x = a[i], y = b[i];
    const double da = x - c.mean_a_, db = y - c.mean_b_, e = x - y;
    c.m2_a_ += da * da;
    c.m2_b_ += db * db;
    c.c_ab_ += da * db;
    c.sse_ += e * e;
    c.sum_a2_ += x * x;
    // NaN propagates into max_abs_ so that a broken tensor cannot look perfect.
    const double ae = std::fabs(e);
    if (!(ae <= c.max_abs_)) c.max_abs_ = ae;
  }
  Merge(c);
}

void TensorMetricsAccumulator::Merge(const TensorMetricsAccumulator& o) {
  if (o.n_ == 0) return;
  if (n_ == 0) {
    *this = o;
    return;
  }
  const double na = static_cast<double>(n_), nb = static_cast<double>(o.n_), n = na + nb;
  const double da = o.mean_a_ - mean_a_, db = o.mean_b_ - mean_b_;
  mean_a_ += da * nb / n;
  mean_b_ += db * nb / n;
  m2_a_ += o.m2_a_ + da * da * na * nb / n;
  m2_b_ += o.m2_b_ + db * db * na * nb / n;
  c_ab_ += o.c_ab_ + da * db * na * nb / n;
  sse_ += o.sse_;
  sum_a2_ += o.sum_a2_;
  if (!(o.max_abs_ <= max_abs_)) max_abs_ = o.max_abs_;
  n_ += o.n_;
}

TensorMetrics TensorMetricsAccumulator::Result() const {
  TensorMetrics m;
  m.count = n_;
  if (n_ == 0) return m;
  m.mse = sse_ / static_cast<double>(n_);
  if (sum_a2_ > 0) {
    m.relative_error = std::sqrt(sse_ / sum_a2_);
  } else {
    m.relative_error = sse_ == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  }
  if (std::isnan(sse_)) {
    m.correlation = std::numeric_limits<double>::quiet_NaN();
  } else if (m2_a_ > 0 && m2_b_ > 0) {
    m.correlation = std::clamp(c_ab_ / std::sqrt(m2_a_ * m2_b_), -1.0, 1.0);
  } else {
    // Pearson's r is undefined for a constant side: identical tensors still count as r = 1.
    m.correlation = sse_ == 0 ? 1.0 : 0.0;
  }
  m.max_abs_error = max_abs_;
  return m;
}

TensorMetrics CompareTensors(const float* a, const float* b, int64_t n) {
  const int64_t n_chunks = (n + kMetricChunk - 1) / kMetricChunk;
  if (n_chunks <= 1) {
    TensorMetricsAccumulator acc;
    acc.Add(a, b, n);
    return acc.Result();
  }
  std::vector<TensorMetricsAccumulator> parts(static_cast<size_t>(n_chunks));
  ThreadPool::Global().ParallelFor(n_chunks, [&](int64_t c0, int64_t c1, int) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t begin = c * kMetricChunk, len = std::min(kMetricChunk, n - begin);
      parts[static_cast<size_t>(c)].Add(a + begin, b + begin, len);
    }
  });
  TensorMetricsAccumulator acc;
  for (const auto& p : parts) acc.Merge(p);
  return acc.Result();
}

TensorMetrics CompareLinearOutputs(const float* x_ref, const float* x_hat, int64_t n_tokens,
                                   const float* w, const float* w_hat, int64_t out, int64_t in) {
  std::vector<float> y(static_cast<size_t>(kRowBlock * out)), y_hat(y.size());
  TensorMetricsAccumulator acc;
  for (int64_t t0 = 0; t0 < n_tokens; t0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, n_tokens - t0);
    LinearF32(x_ref + t0 * in, in, w, in, y.data(), out, rows, out, in, false,
              ThreadPool::Global());
    LinearF32(x_hat + t0 * in, in, w_hat, in, y_hat.data(), out, rows, out, in, false,
              ThreadPool::Global());
    const int64_t n = rows * out;
    // Chunks of rows in a fixed order, merged in order: deterministic for any thread count.
    const int64_t n_chunks = (n + kMetricChunk - 1) / kMetricChunk;
    std::vector<TensorMetricsAccumulator> parts(static_cast<size_t>(n_chunks));
    ThreadPool::Global().ParallelFor(n_chunks, [&](int64_t c0, int64_t c1, int) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t begin = c * kMetricChunk, len = std::min(kMetricChunk, n - begin);
        parts[static_cast<size_t>(c)].Add(y.data() + begin, y_hat.data() + begin, len);
      }
    });
    for (const auto& p : parts) acc.Merge(p);
  }
  return acc.Result();
}

TensorMetrics CompareLinearOutputs(const float* x, int64_t n_tokens, const float* w,
                                   const float* w_hat, int64_t out, int64_t in) {
  return CompareLinearOutputs(x, x, n_tokens, w, w_hat, out, in);
}

SizeMetrics& SizeMetrics::operator+=(const SizeMetrics& o) {
  parameters += o.parameters;
  fp16_bytes += o.fp16_bytes;
  fp32_bytes += o.fp32_bytes;
  stored_bytes += o.stored_bytes;
  return *this;
}

namespace {
SizeMetrics PlainSize(int64_t params, int64_t stored) {
  return {params, 2 * params, 4 * params, stored};
}
}  // namespace

SizeMetrics TensorSize(const Tensor& t) {
  return PlainSize(t.numel(), static_cast<int64_t>(t.nbytes()));
}

SizeMetrics QuantizedSize(const QuantizedLinear& q) {
  const int64_t words = (q.out * q.params.bits + 31) / 32;
  const int64_t ng = q.n_groups();
  return PlainSize(q.out * q.in, 4 * q.in * words + 4 * ng * words + 2 * ng * q.out);
}

CheckpointSizes MeasureCheckpointSizes(const std::string& path) {
  namespace fs = std::filesystem;
  CheckpointSizes r;
  r.path = path;
  if (!fs::exists(path)) throw Error(path + ": no such file or folder");
  if (!fs::is_directory(path)) {
    // A GGUF file: its own block formats (Q4_1, Q8_0, ...) are not AWQ linears.
    r.format = "gguf";
    const GgufFile g = GgufFile::Open(path);
    for (const GgufTensorInfo& t : g.tensors()) {
      CheckpointEntry e;
      e.name = t.name;
      e.dtype = GgmlTypeName(t.type);
      e.shape = t.shape();
      e.size = PlainSize(NumElements(e.shape), static_cast<int64_t>(t.nbytes));
      r.other += e.size;
      r.entries.push_back(std::move(e));
    }
    r.total = r.other;
    return r;
  }
  r.format = "safetensors";
  const std::optional<QuantConfig> qc = ReadAwqQuantConfig(path);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(path);
  std::set<std::string> consumed;
  std::vector<CheckpointEntry> quantized, other;
  const std::string suffix = ".qweight";
  if (qc) {
    for (const std::string& name : ckpt.names()) {
      if (name.size() <= suffix.size() ||
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
        continue;
      }
      const std::string module = name.substr(0, name.size() - suffix.size());
      for (const char* part : {".qweight", ".qzeros", ".scales"}) {
        if (!ckpt.Has(module + part)) {
          throw Error(ckpt.source() + ": quantized linear " + module + " has no tensor " + module +
                      part);
        }
      }
      const Shape& scales = ckpt.shape(module + ".scales");
      const Shape& qweight = ckpt.shape(module + ".qweight");
      if (scales.size() != 2 || qweight.size() != 2) {
        throw Error(ckpt.source() + ": " + module + ".scales/.qweight must be 2-D, got " +
                    ShapeToString(scales) + " and " + ShapeToString(qweight));
      }
      CheckpointEntry e;
      e.name = module;
      e.quantized = true;
      e.dtype = "awq";
      const QuantParams p = qc->ParamsFor(module).value_or(qc->DefaultParams());
      e.bits = p.bits;
      e.group_size = p.group_size;
      e.shape = {scales[1], qweight[0]};
      int64_t stored = 0;
      for (const char* part : {".qweight", ".qzeros", ".scales"}) {
        stored += static_cast<int64_t>(ckpt.Info(module + part).nbytes());
        consumed.insert(module + part);
      }
      e.size = PlainSize(e.shape[0] * e.shape[1], stored);
      r.quantized += e.size;
      quantized.push_back(std::move(e));
    }
  }
  for (const std::string& name : ckpt.names()) {
    if (consumed.count(name)) continue;
    const SafetensorsTensorInfo& info = ckpt.Info(name);
    CheckpointEntry e;
    e.name = name;
    e.dtype = info.dtype_name;
    e.shape = info.shape;
    e.size = PlainSize(NumElements(info.shape), static_cast<int64_t>(info.nbytes()));
    r.other += e.size;
    other.push_back(std::move(e));
  }
  r.entries = std::move(quantized);
  for (auto& e : other) r.entries.push_back(std::move(e));
  r.total = r.quantized;
  r.total += r.other;
  return r;
}

OutputComparison CompareModelOutputs(const Model& reference, const Model& quantized,
                                     const std::vector<int32_t>& tokens,
                                     const OutputComparisonOptions& options) {
  const int64_t ctx = options.ctx;
  if (ctx < 2) throw Error("--ctx must be at least 2, got " + std::to_string(ctx));
  const int64_t v = reference.config().vocab_size, d_ref = reference.config().hidden_size,
                d_q = quantized.config().hidden_size;
  if (quantized.config().vocab_size != v) {
    throw Error("the models have different vocabularies: reference " + std::to_string(v) +
                " tokens, quantized " + std::to_string(quantized.config().vocab_size));
  }
  int64_t avail = static_cast<int64_t>(tokens.size());
  if (options.max_tokens >= 0) avail = std::min(avail, options.max_tokens);
  const int64_t n_windows = avail / ctx;
  if (n_windows == 0) {
    throw Error("comparing outputs needs at least one window of " + std::to_string(ctx) +
                " tokens, but the text has " + std::to_string(avail));
  }
  for (int64_t i = 0; i < n_windows * ctx; ++i) {
    if (tokens[static_cast<size_t>(i)] < 0 || tokens[static_cast<size_t>(i)] >= v) {
      throw Error("token " + std::to_string(tokens[static_cast<size_t>(i)]) + " at position " +
                  std::to_string(i) + " is outside the vocabulary of " + std::to_string(v));
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  KvCache cache_ref = reference.NewCache(ctx), cache_q = quantized.NewCache(ctx);
  std::vector<float> hidden_ref(static_cast<size_t>(ctx * d_ref));
  std::vector<float> hidden_q(static_cast<size_t>(ctx * d_q));
  std::vector<float> logits_ref(static_cast<size_t>(kRowBlock * v)), logits_q(logits_ref.size());
  // Per-row results of one block, merged in row order so the sums are deterministic.
  struct RowStats {
    double nll_ref = 0, nll_q = 0, kl = 0;
    bool agree = false;
    TensorMetricsAccumulator acc;
  };
  std::vector<RowStats> rows_stats(static_cast<size_t>(kRowBlock));
  OutputComparison r;
  double nll_ref = 0, nll_q = 0, kl_sum = 0;
  int64_t agree = 0;
  TensorMetricsAccumulator logit_acc;
  for (int64_t w = 0; w < n_windows; ++w) {
    const int32_t* win = tokens.data() + w * ctx;
    cache_ref.Clear();
    cache_q.Clear();
    reference.Forward(win, ctx, cache_ref, hidden_ref.data());
    quantized.Forward(win, ctx, cache_q, hidden_q.data());
    // Position t predicts token t + 1; the window's last position predicts nothing.
    for (int64_t r0 = 0; r0 < ctx - 1; r0 += kRowBlock) {
      const int64_t rows = std::min(kRowBlock, ctx - 1 - r0);
      reference.Logits(hidden_ref.data() + r0 * d_ref, rows, logits_ref.data());
      quantized.Logits(hidden_q.data() + r0 * d_q, rows, logits_q.data());
      ThreadPool::Global().ParallelFor(rows, [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; ++i) {
          const float* a = logits_ref.data() + i * v;
          const float* b = logits_q.data() + i * v;
          RowStats& s = rows_stats[static_cast<size_t>(i)];
          const double lse_a = LogSumExpRow(a, v), lse_b = LogSumExpRow(b, v);
          const int32_t target = win[r0 + i + 1];
          s.nll_ref = lse_a - a[target];
          s.nll_q = lse_b - b[target];
          // KL(p || q) = sum_k p_k (log p_k - log q_k), in double.
          double kl = 0;
          int64_t arg_a = 0, arg_b = 0;
          for (int64_t k = 0; k < v; ++k) {
            const double la = a[k] - lse_a, lb = b[k] - lse_b;
            kl += std::exp(la) * (la - lb);
            if (a[k] > a[arg_a]) arg_a = k;
            if (b[k] > b[arg_b]) arg_b = k;
          }
          // Rounding can leave a tiny negative sum for identical distributions.
          s.kl = std::max(kl, 0.0);
          s.agree = arg_a == arg_b;
          s.acc = TensorMetricsAccumulator();
          s.acc.Add(a, b, v);
        }
      });
      for (int64_t i = 0; i < rows; ++i) {
        const RowStats& s = rows_stats[static_cast<size_t>(i)];
        nll_ref += s.nll_ref;
        nll_q += s.nll_q;
        kl_sum += s.kl;
        r.max_kl = std::max(r.max_kl, s.kl);
        agree += s.agree ? 1 : 0;
        logit_acc.Merge(s.acc);
      }
      r.n_positions += rows;
    }
    ++r.n_windows;
    if (options.progress) options.progress((w + 1) * ctx, n_windows * ctx);
  }
  const double np = static_cast<double>(r.n_positions);
  r.ppl_reference = std::exp(nll_ref / np);
  r.ppl_quantized = std::exp(nll_q / np);
  r.mean_kl = kl_sum / np;
  r.top1_agreement = static_cast<double>(agree) / np;
  r.logits = logit_acc.Result();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

void ValidationReport::Add(const std::string& metric, double value, double threshold, bool is_max) {
  ThresholdCheck c;
  c.metric = metric;
  c.value = value;
  c.threshold = threshold;
  c.is_max = is_max;
  // Written so that NaN fails both ways.
  c.passed = is_max ? (value <= threshold) : (value >= threshold);
  if (!c.passed) {
    passed = false;
    reasons.push_back(metric + " " + Fmt(value) + (is_max ? " > max " : " < min ") +
                      Fmt(threshold));
  }
  checks.push_back(std::move(c));
}

ValidationReport ValidateMetrics(const TensorMetrics& m, const TensorThresholds& t) {
  ValidationReport r;
  if (t.max_mse) r.Add("mse", m.mse, *t.max_mse, true);
  if (t.max_relative_error) r.Add("relative_error", m.relative_error, *t.max_relative_error, true);
  if (t.min_correlation) r.Add("correlation", m.correlation, *t.min_correlation, false);
  if (t.max_abs_error) r.Add("max_abs_error", m.max_abs_error, *t.max_abs_error, true);
  return r;
}

ValidationReport ValidateOutputs(const OutputComparison& c, const OutputThresholds& t) {
  ValidationReport r = ValidateMetrics(c.logits, t.logits);
  if (t.max_kl) r.Add("kl", c.mean_kl, *t.max_kl, true);
  if (t.min_top1) r.Add("top1", c.top1_agreement, *t.min_top1, false);
  if (t.max_ppl_ratio)
    r.Add("ppl_ratio", c.ppl_quantized / c.ppl_reference, *t.max_ppl_ratio, true);
  return r;
}

}  // namespace awq
