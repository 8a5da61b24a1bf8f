// The library-level Quantizer: RTN, the salience-weighted scale search, batches, dequantization,
// metrics and threshold checks around the group quantizer of quantizer.cc.
#include "awq/quantizer_api.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>

#include "awq/awq_search.h"
#include "awq/error.h"
#include "awq/thread_pool.h"

namespace awq {

namespace {

// The size below which QuantizeLinear stays on the calling thread (quantizer.cc's
// kMinParallelWeights), so such tensors can be quantized inside a pool task.
constexpr int64_t kSerialWeights = 65536;

// Floor under the salience, relative to its maximum: a channel that never fires would give
// s = 0^alpha = 0 and a division by zero when unscaling.
constexpr double kMinRelativeSalience = 1e-8;

// sum_j sal_j^2 * sum_o (w[o, j] - w_hat[o, j])^2, in double.
double WeightedError(const float* w, const float* w_hat, int64_t out, int64_t in,
                     const std::vector<double>& sal2) {
  std::vector<double> col(static_cast<size_t>(in), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    const float* a = w + o * in;
    const float* b = w_hat + o * in;
    for (int64_t j = 0; j < in; ++j) {
      const double e = static_cast<double>(a[j]) - b[j];
      col[static_cast<size_t>(j)] += e * e;
    }
  }
  double s = 0;
  for (int64_t j = 0; j < in; ++j) s += sal2[static_cast<size_t>(j)] * col[static_cast<size_t>(j)];
  return s;
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

ScaledQuantization Quantizer::Quantize(const float* w, int64_t out, int64_t in,
                                       const std::vector<float>& salience) const {
  if (static_cast<int64_t>(salience.size()) != in) {
    throw Error("Quantizer::Quantize: salience has " + std::to_string(salience.size()) +
                " entries but the tensor has " + std::to_string(in) + " input channels");
  }
  double max_sal = 0;
  for (size_t j = 0; j < salience.size(); ++j) {
    if (!std::isfinite(salience[j]) || salience[j] < 0) {
      throw Error("Quantizer::Quantize: salience[" + std::to_string(j) +
                  "] = " + std::to_string(salience[j]) + " is not a finite non-negative number");
    }
    max_sal = std::max(max_sal, static_cast<double>(salience[j]));
  }
  GroupSize(params(), in);  // a bad group size is an error before any work
  const double floor = max_sal > 0 ? max_sal * kMinRelativeSalience : 1.0;
  std::vector<double> sal(salience.size()), sal2(salience.size());
  for (size_t j = 0; j < salience.size(); ++j) {
    sal[j] = std::max(static_cast<double>(salience[j]), floor);
    sal2[j] = static_cast<double>(salience[j]) * salience[j];
  }
  ScaledQuantization best;
  best.weighted_error = std::numeric_limits<double>::infinity();
  std::vector<float> s(static_cast<size_t>(in)), w_hat(static_cast<size_t>(out * in));
  std::vector<float> best_s;
  for (int i = 0; i < kAlphaGrid; ++i) {
    const double alpha = static_cast<double>(i) / kAlphaGrid;
    double mx = 0, mn = std::numeric_limits<double>::infinity();
    for (size_t j = 0; j < s.size(); ++j) {
      const double v = std::pow(sal[j], alpha);
      s[j] = static_cast<float>(v);
      mx = std::max(mx, v);
      mn = std::min(mn, v);
    }
    // AWQ's normalization keeps the scales centred around 1 (alpha = 0 stays exactly 1).
    const double norm = std::sqrt(mx * mn);
    for (float& v : s) {
      v = static_cast<float>(v / norm);
      if (!std::isfinite(v) || v <= 0) v = 1.0f;
    }
    ScaleQuantizeUnscale(w, w_hat.data(), out, in, s, params());
    const double err = WeightedError(w, w_hat.data(), out, in, sal2);
    if (i == 0) best.rtn_weighted_error = err;
    if (err < best.weighted_error) {
      best.weighted_error = err;
      best.alpha = alpha;
      best_s = s;
    }
  }
  if (best_s.empty()) {
    throw Error(
        "Quantizer::Quantize: no finite weighted error on the alpha grid (non-finite "
        "weights?)");
  }
  std::vector<float> scaled(static_cast<size_t>(out * in));
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t j = 0; j < in; ++j) {
      scaled[static_cast<size_t>(o * in + j)] = w[o * in + j] * best_s[static_cast<size_t>(j)];
    }
  }
  best.linear = QuantizeLinear(scaled.data(), out, in, params());
  best.input_scales = std::move(best_s);
  return best;
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
