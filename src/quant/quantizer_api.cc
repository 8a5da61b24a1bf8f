// The library-level Quantizer: RTN, AWQ's scale and clip search (awq_search.cc's, as the
// whole-model pipeline runs it for a linear's own output), batches, dequantization, metrics and
// threshold checks around the group quantizer of quantizer.cc.
#include "awq/quantizer_api.h"

#include <cmath>
#include <exception>
#include <string>

#include "awq/awq_search.h"
#include "awq/error.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/sgemm.h"

namespace awq {

namespace {

// The size below which QuantizeLinear stays on the calling thread (quantizer.cc's
// kMinParallelWeights), so such tensors can be quantized inside a pool task.
constexpr int64_t kSerialWeights = 65536;

// The first non-finite entry of a [rows, cols] matrix as "[r, c] = v", or "" when all are finite.
std::string FirstNonFinite(const float* a, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (!std::isfinite(a[i])) {
      return "[" + std::to_string(i / cols) + ", " + std::to_string(i % cols) +
             "] = " + std::to_string(a[i]);
    }
  }
  return "";
}

}  // namespace

Quantizer::Quantizer(QuantConfig config) : config_(std::move(config)) { config_.Validate(); }

Quantizer Quantizer::FromPreset(const std::string& name) { return Quantizer(QuantPreset(name)); }

QuantizedLinear Quantizer::Quantize(const float* w, int64_t out, int64_t in) const {
  if (w == nullptr || out <= 0 || in <= 0) {
    throw Error("Quantizer::Quantize: empty tensor [" + std::to_string(out) + ", " +
                std::to_string(in) + "]");
  }
  return QuantizeLinear(w, out, in, params());
}

ScaledQuantization Quantizer::Quantize(const float* w, int64_t out, int64_t in, const float* x,
                                       int64_t n_tokens) const {
  if (w == nullptr || out <= 0 || in <= 0) {
    throw Error("Quantizer::Quantize: empty tensor [" + std::to_string(out) + ", " +
                std::to_string(in) + "]");
  }
  if (x == nullptr || n_tokens <= 0) {
    throw Error("Quantizer::Quantize: AWQ needs input activations, got " +
                std::to_string(n_tokens) + " tokens");
  }
  const QuantParams p = params();
  GroupSize(p, in);  // a bad group size is an error before any work
  if (const std::string bad = FirstNonFinite(w, out, in); !bad.empty()) {
    throw Error("Quantizer::Quantize: weight " + bad + " is not finite");
  }
  if (const std::string bad = FirstNonFinite(x, n_tokens, in); !bad.empty()) {
    throw Error("Quantizer::Quantize: activation " + bad + " is not finite");
  }
  std::vector<float> scaled(w, w + out * in);
  std::vector<GroupLinear> group = {{scaled.data(), out, p, ""}};
  const ScaleSearchResult r = SearchOwnOutputScales(group, in, x, n_tokens, config_);
  std::vector<float> x_scaled(x, x + n_tokens * in);
  std::vector<std::vector<float>> clip =
      FoldScalesAndClip(group, in, x_scaled.data(), n_tokens, r.scales, config_);

  ScaledQuantization res;
  res.linear = QuantizeLinear(scaled.data(), out, in, p);
  res.input_scales = r.scales;
  res.best_index = r.best_index;
  res.ratio = r.best_index < 0 ? 0.0 : static_cast<double>(r.best_index) / config_.n_grid;
  res.search_loss = r.best_loss;
  res.rtn_loss = r.losses.back();  // s = 1, tried last
  res.losses = r.losses;
  res.clip_max = std::move(clip[0]);
  // The output MSE of what is returned, in the arithmetic of the search's loss.
  ThreadPool& pool = ThreadPool::Global();
  std::vector<float> reference(static_cast<size_t>(n_tokens * out)), y(reference.size());
  LinearF32(x, in, w, in, reference.data(), out, n_tokens, out, in, false, pool);
  const std::vector<float> w_hat = Dequantize(res);
  LinearF32(x, in, w_hat.data(), in, y.data(), out, n_tokens, out, in, false, pool);
  res.loss = MeanSquaredError(reference, y);
  return res;
}

std::vector<QuantizedLinear> Quantizer::QuantizeBatch(
    const std::vector<WeightView>& tensors) const {
  std::vector<QuantizedLinear> out(tensors.size());
  std::vector<std::exception_ptr> errors(tensors.size());
  std::vector<size_t> small;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].out * tensors[i].in < kSerialWeights) small.push_back(i);
  }
  // Small tensors: one per pool task (QuantizeLinear stays on the calling thread for them).
  // Exceptions cannot cross the pool, so each is kept and the first rethrown afterwards.
  ThreadPool::Global().ParallelFor(
      static_cast<int64_t>(small.size()), [&](int64_t b, int64_t e, int) {
        for (int64_t k = b; k < e; ++k) {
          const size_t i = small[static_cast<size_t>(k)];
          try {
            out[i] = Quantize(tensors[i].w, tensors[i].out, tensors[i].in);
          } catch (...) {
            errors[i] = std::current_exception();
          }
        }
      });
  // Large tensors: one after another, each split over the pool's rows.
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].out * tensors[i].in >= kSerialWeights) {
      try {
        out[i] = Quantize(tensors[i].w, tensors[i].out, tensors[i].in);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  }
  for (size_t i = 0; i < errors.size(); ++i) {
    if (!errors[i]) continue;
    try {
      std::rethrow_exception(errors[i]);
    } catch (const Error& e) {
      throw Error("QuantizeBatch: tensor " + std::to_string(i) + ": " + e.what());
    }
  }
  return out;
}

std::vector<float> Quantizer::Dequantize(const QuantizedLinear& q) const {
  std::vector<float> w(static_cast<size_t>(q.out * q.in));
  DequantizeLinear(q, w.data());
  return w;
}

std::vector<float> Quantizer::Dequantize(const ScaledQuantization& q) const {
  std::vector<float> w = Dequantize(q.linear);
  AWQ_CHECK(static_cast<int64_t>(q.input_scales.size()) == q.linear.in);
  for (int64_t o = 0; o < q.linear.out; ++o) {
    for (int64_t j = 0; j < q.linear.in; ++j) {
      w[static_cast<size_t>(o * q.linear.in + j)] /= q.input_scales[static_cast<size_t>(j)];
    }
  }
  return w;
}

TensorMetrics Quantizer::Metrics(const float* original, const QuantizedLinear& q) const {
  const std::vector<float> w = Dequantize(q);
  return CompareTensors(original, w.data(), q.out * q.in);
}

TensorMetrics Quantizer::Metrics(const float* original, const ScaledQuantization& q) const {
  const std::vector<float> w = Dequantize(q);
  return CompareTensors(original, w.data(), q.linear.out * q.linear.in);
}

ValidationReport Quantizer::Validate(const TensorMetrics& m, const TensorThresholds& t) {
  return ValidateMetrics(m, t);
}

}  // namespace awq
