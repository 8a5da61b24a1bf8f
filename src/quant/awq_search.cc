// AWQ's searches on fp32 buffers: statistics, candidate scales, the scale search driver, the
// whole search of a group inspected at its own output (with its fold and clip), and the clip
// search (Gram-matrix form over sgemm batches, plus its scalar oracle).
#include "awq/awq_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "awq/error.h"
#include "awq/gptq.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/sgemm.h"

namespace awq {

namespace {

// Added to a group's max |w| before dividing (AutoAWQ's 1e-6): an all-zero group gives 0.
constexpr float kWeightMeanEps = 1e-6f;
// AutoAWQ's floors in the scale formula, as fp32 like the torch tensors they meet.
constexpr float kScaleEps = 1e-4f;

// Rows of (channel, candidate) pairs the clip search materialises at once: 8 Mi floats (32 MiB),
// enough for a whole 1536 x 576 weight's 10 candidates in one pass.
constexpr int64_t kClipBudgetFloats = int64_t{1} << 23;
// Output channels per sgemm call of the clip search; chunk boundaries are multiples of it so the
// results do not depend on the number of threads.
constexpr int64_t kClipRowTile = 16;

void CheckPositive(const char* what, int64_t v) {
  if (v <= 0)
    throw Error(std::string("awq search: ") + what + " = " + std::to_string(v) +
                " must be positive");
}

// The clip candidates' shrink factors 1 - i/n_grid, rounded to fp32 as torch does when it
// multiplies an fp32 tensor by a Python float.
std::vector<float> ShrinkFactors(int n_grid, double max_shrink) {
  if (n_grid <= 0) throw Error("clip search: n_grid = " + std::to_string(n_grid) + " must be > 0");
  if (!(max_shrink >= 0.0 && max_shrink <= 1.0)) {
    throw Error("clip search: max_shrink = " + std::to_string(max_shrink) + " must be in [0, 1]");
  }
  const int n_cand = static_cast<int>(n_grid * max_shrink);  // Python's int(): truncation
  std::vector<float> f(static_cast<size_t>(n_cand));
  for (int i = 0; i < n_cand; ++i) f[i] = static_cast<float>(1.0 - static_cast<double>(i) / n_grid);
  return f;
}

// Rows 0, step, 2 step, ... of x [n_tokens, in], step = max(1, n_tokens / n_sample_token).
std::vector<float> SampleTokens(const float* x, int64_t n_tokens, int64_t in,
                                int64_t n_sample_token, int64_t* n_used) {
  CheckPositive("n_tokens", n_tokens);
  CheckPositive("n_sample_token", n_sample_token);
  const int64_t step = std::max<int64_t>(1, n_tokens / n_sample_token);
  const int64_t t_used = (n_tokens + step - 1) / step;
  std::vector<float> xs(static_cast<size_t>(t_used * in));
  for (int64_t t = 0; t < t_used; ++t) {
    std::copy(x + t * step * in, x + (t * step + 1) * in, xs.begin() + t * in);
  }
  *n_used = t_used;
  return xs;
}

// max |w| of every group, [out, n_groups].
std::vector<float> GroupAbsMax(const float* w, int64_t out, int64_t in, int64_t gs) {
  const int64_t ng = in / gs;
  std::vector<float> m(static_cast<size_t>(out * ng));
  for (int64_t i = 0; i < out * ng; ++i) {
    const float* wg = w + i * gs;
    float a = 0;
    for (int64_t k = 0; k < gs; ++k) a = std::max(a, std::fabs(wg[k]));
    m[i] = a;
  }
  return m;
}

}  // namespace

std::vector<float> ChannelMeanAbs(const float* x, int64_t n_rows, int64_t d) {
  CheckPositive("n_rows", n_rows);
  CheckPositive("channels", d);
  std::vector<float> mean(static_cast<size_t>(d));
  // Threads own column ranges, so every sum runs over the rows in the same order.
  ThreadPool::Global().ParallelFor(
      d,
      [&](int64_t begin, int64_t end, int) {
        std::vector<double> acc(static_cast<size_t>(end - begin), 0.0);
        for (int64_t t = 0; t < n_rows; ++t) {
          const float* row = x + t * d + begin;
          for (int64_t c = 0; c < end - begin; ++c) acc[c] += std::fabs(row[c]);
        }
        for (int64_t c = begin; c < end; ++c) {
          mean[c] = static_cast<float>(acc[c - begin] / static_cast<double>(n_rows));
        }
      },
      /*grain=*/16);
  return mean;
}

std::vector<float> WeightMeanNormalized(const std::vector<const float*>& weights,
                                        const std::vector<int64_t>& rows, int64_t in,
                                        int64_t group_size) {
  if (weights.empty() || weights.size() != rows.size()) {
    throw Error("awq search: w_mean needs one row count per weight (" +
                std::to_string(weights.size()) + " weights, " + std::to_string(rows.size()) +
                " row counts)");
  }
  QuantParams shape_only;
  shape_only.group_size = group_size;
  const int64_t gs = GroupSize(shape_only, in);
  int64_t total_rows = 0;
  for (int64_t r : rows) {
    CheckPositive("rows", r);
    total_rows += r;
  }
  std::vector<float> mean(static_cast<size_t>(in));
  // Threads own groups of columns (a group's max needs all of it), rows summed in order.
  ThreadPool::Global().ParallelFor(in / gs, [&](int64_t g0, int64_t g1, int) {
    const int64_t c0 = g0 * gs, width = (g1 - g0) * gs;
    std::vector<double> acc(static_cast<size_t>(width), 0.0);
    for (size_t i = 0; i < weights.size(); ++i) {
      for (int64_t r = 0; r < rows[i]; ++r) {
        const float* row = weights[i] + r * in + c0;
        for (int64_t g = 0; g < g1 - g0; ++g) {
          const float* wg = row + g * gs;
          float amax = 0;
          for (int64_t k = 0; k < gs; ++k) amax = std::max(amax, std::fabs(wg[k]));
          const float denom = amax + kWeightMeanEps;
          for (int64_t k = 0; k < gs; ++k) acc[g * gs + k] += std::fabs(wg[k]) / denom;
        }
      }
    }
    for (int64_t c = 0; c < width; ++c) {
      mean[c0 + c] = static_cast<float>(acc[c] / static_cast<double>(total_rows));
    }
  });
  return mean;
}

std::vector<float> CandidateScales(const std::vector<float>& x_mean,
                                   const std::vector<float>& w_mean, double ratio,
                                   bool duo_scaling) {
  if (duo_scaling && x_mean.size() != w_mean.size()) {
    throw Error("awq search: x_mean has " + std::to_string(x_mean.size()) +
                " channels but w_mean has " + std::to_string(w_mean.size()));
  }
  const size_t n = x_mean.size();
  const float r = static_cast<float>(ratio);
  std::vector<float> s(n);
  for (size_t c = 0; c < n; ++c) {
    float v = std::pow(x_mean[c], r);
    if (duo_scaling) v = v / (std::pow(w_mean[c], 1.0f - r) + kScaleEps);
    s[c] = v < kScaleEps ? kScaleEps : v;  // clamp(min=1e-4); a NaN stays NaN as in torch
  }
  // torch's max()/min() return NaN when any entry is NaN; then every entry becomes 1 below.
  float mx = -std::numeric_limits<float>::infinity(), mn = std::numeric_limits<float>::infinity();
  bool nan = false;
  for (float v : s) {
    nan |= v != v;
    mx = std::max(mx, v);
    mn = std::min(mn, v);
  }
  const float norm = nan ? std::numeric_limits<float>::quiet_NaN() : std::sqrt(mx * mn);
  for (float& v : s) {
    v = v / norm;
    if (!std::isfinite(v)) v = 1.0f;
  }
  return s;
}

ScaleSearchResult SearchScales(const std::vector<float>& x_mean, const std::vector<float>& w_mean,
                               int n_grid, bool duo_scaling, bool include_identity,
                               const std::function<double(const std::vector<float>&)>& loss_fn) {
  if (n_grid <= 0) throw Error("scale search: n_grid = " + std::to_string(n_grid) + " must be > 0");
  ScaleSearchResult res;
  double best = std::numeric_limits<double>::infinity();
  bool found = false;
  for (int i = 0; i < n_grid; ++i) {
    // The ratio as torch forms it: arange(n_grid, float32) / n_grid, in fp32.
    const float ratio = static_cast<float>(i) / static_cast<float>(n_grid);
    std::vector<float> s = CandidateScales(x_mean, w_mean, ratio, duo_scaling);
    const double loss = loss_fn(s);
    res.losses.push_back(loss);
    if (loss < best) {
      best = loss;
      found = true;
      res.best_index = i;
      res.scales = std::move(s);
    }
  }
  if (include_identity) {
    // With duo scaling ratio 0 is s = 1 / (w_mean + 1e-4) normalised, not the identity; trying
    // s = 1 too guarantees the search never does worse than plain round-to-nearest.
    std::vector<float> ones(x_mean.size(), 1.0f);
    const double loss = loss_fn(ones);
    res.losses.push_back(loss);
    if (loss < best) {
      best = loss;
      found = true;
      res.best_index = -1;
      res.scales = std::move(ones);
    }
  }
  if (!found) {
    std::string list;
    for (double l : res.losses) list += (list.empty() ? "" : ", ") + std::to_string(l);
    throw Error("scale search: no candidate gave a finite loss (losses: " + list + ")");
  }
  res.best_loss = best;
  return res;
}

RoundTrip RoundTripOf(const QuantParams& p) {
  return [p](float* w, int64_t rows, int64_t in) { FakeQuantize(w, rows, in, p); };
}

void ScaleQuantizeUnscale(const float* w, float* out, int64_t rows, int64_t in,
                          const std::vector<float>& s, const QuantParams& p) {
  ScaleQuantizeUnscale(w, out, rows, in, s, RoundTripOf(p));
}

void ScaleQuantizeUnscale(const float* w, float* out, int64_t rows, int64_t in,
                          const std::vector<float>& s, const RoundTrip& rt) {
  if (static_cast<int64_t>(s.size()) != in) {
    throw Error("awq search: " + std::to_string(s.size()) + " scales for input width " +
                std::to_string(in));
  }
  // Rows split over the pool; the round trip spreads over it itself, so it runs in between.
  ThreadPool& pool = ThreadPool::Global();
  pool.ParallelFor(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = 0; c < in; ++c) out[r * in + c] = w[r * in + c] * s[c];
    }
  });
  rt(out, rows, in);
  // Divided, not multiplied by 1/s: the reference divides, and 1/s is not exact.
  pool.ParallelFor(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = 0; c < in; ++c) out[r * in + c] /= s[c];
    }
  });
}

std::vector<float> SearchClip(const float* w, int64_t out, int64_t in, const float* x,
                              int64_t n_tokens, const QuantParams& p, int n_grid, double max_shrink,
                              int64_t n_sample_token) {
  return SearchClip(w, out, in, x, n_tokens, GroupSize(p, in), RoundTripOf(p), n_grid, max_shrink,
                    n_sample_token);
}

std::vector<float> SearchClip(const float* w, int64_t out, int64_t in, const float* x,
                              int64_t n_tokens, int64_t group, const RoundTrip& rt, int n_grid,
                              double max_shrink, int64_t n_sample_token) {
  CheckPositive("output width", out);
  if (group <= 0 || in % group != 0) {
    throw Error("clip search: group of " + std::to_string(group) + " inputs for width " +
                std::to_string(in));
  }
  const int64_t gs = group;
  const int64_t ng = in / gs;
  const std::vector<float> factors = ShrinkFactors(n_grid, max_shrink);
  const int64_t n_cand = static_cast<int64_t>(factors.size());
  int64_t t_used = 0;
  const std::vector<float> xs = SampleTokens(x, n_tokens, in, n_sample_token, &t_used);
  const std::vector<float> org_max = GroupAbsMax(w, out, in, gs);
  std::vector<float> best_val = org_max;
  if (n_cand == 0) return best_val;
  std::vector<float> best_err(best_val.size(), std::numeric_limits<float>::infinity());

  ThreadPool& pool = ThreadPool::Global();
  // err = d^T H_g d with H_g = X_g^T X_g / T when a group is narrower than the token count,
  // otherwise mean((X_g d)^2) straight from the tokens (see the header for the costs).
  const bool gram = gs <= t_used;
  const int64_t e_width = gram ? gs : t_used;
  std::vector<float> gram_h;
  if (gram) {
    gram_h.resize(static_cast<size_t>(ng * gs * gs));
    const float inv_t = 1.0f / static_cast<float>(t_used);
    pool.ParallelFor(ng, [&](int64_t g0, int64_t g1, int) {
      for (int64_t g = g0; g < g1; ++g) {
        SgemmSerial(/*trans_a=*/true, /*trans_b=*/false, gs, gs, t_used, inv_t, xs.data() + g * gs,
                    in, xs.data() + g * gs, in, 0.0f, gram_h.data() + g * gs * gs, gs);
      }
    });
  }

  // Output channels per pass: their n_cand candidate rows of clamped, then fake-quantized, weights
  // fill the budget. FakeQuantize runs from this thread between our parallel phases because it
  // spreads its rows over the same pool (which must not be entered from inside a worker).
  const int64_t batch = std::max<int64_t>(
      kClipRowTile, (kClipBudgetFloats / (n_cand * in)) / kClipRowTile * kClipRowTile);
  std::vector<float> cand(static_cast<size_t>(std::min(batch, out) * n_cand * in));
  for (int64_t b0 = 0; b0 < out; b0 += batch) {
    const int64_t rows = std::min(batch, out - b0);
    // cand[(r * n_cand + c), :] = clamp(w[b0 + r, :], -max_val, max_val) group by group.
    pool.ParallelFor(
        rows,
        [&](int64_t r0, int64_t r1, int) {
          for (int64_t r = r0; r < r1; ++r) {
            const float* wr = w + (b0 + r) * in;
            for (int64_t c = 0; c < n_cand; ++c) {
              float* dst = cand.data() + (r * n_cand + c) * in;
              for (int64_t g = 0; g < ng; ++g) {
                const float mv = org_max[(b0 + r) * ng + g] * factors[c];
                for (int64_t k = g * gs; k < (g + 1) * gs; ++k) {
                  dst[k] = std::min(std::max(wr[k], -mv), mv);
                }
              }
            }
          }
        },
        kClipRowTile);
    rt(cand.data(), rows * n_cand, in);
    pool.ParallelFor(
        rows,
        [&](int64_t r0, int64_t r1, int) {
          std::vector<float> e(static_cast<size_t>(kClipRowTile * n_cand * e_width));
          for (int64_t t0 = r0; t0 < r1; t0 += kClipRowTile) {
            const int64_t tr = std::min(kClipRowTile, r1 - t0);
            const int64_t m = tr * n_cand;
            float* d = cand.data() + t0 * n_cand * in;  // [m, in], becomes Q(w_c) - w
            for (int64_t i = 0; i < m; ++i) {
              const float* wr = w + (b0 + t0 + i / n_cand) * in;
              float* di = d + i * in;
              for (int64_t k = 0; k < in; ++k) di[k] -= wr[k];
            }
            for (int64_t g = 0; g < ng; ++g) {
              const float* dg = d + g * gs;
              if (gram) {
                SgemmSerial(false, false, m, gs, gs, 1.0f, dg, in, gram_h.data() + g * gs * gs, gs,
                            0.0f, e.data(), gs);
              } else {
                SgemmSerial(false, true, m, t_used, gs, 1.0f, dg, in, xs.data() + g * gs, in, 0.0f,
                            e.data(), t_used);
              }
              for (int64_t i = 0; i < m; ++i) {
                const float* ei = e.data() + i * e_width;
                float err = 0;
                if (gram) {
                  const float* di = dg + i * in;
                  for (int64_t k = 0; k < gs; ++k) err += ei[k] * di[k];
                } else {
                  for (int64_t k = 0; k < t_used; ++k) err += ei[k] * ei[k];
                  err /= static_cast<float>(t_used);
                }
                // Candidates of one channel are visited in grid order: strict < keeps the
                // earliest on ties, and a NaN error never wins.
                const int64_t at = (b0 + t0 + i / n_cand) * ng + g;
                if (err < best_err[at]) {
                  best_err[at] = err;
                  best_val[at] = org_max[at] * factors[i % n_cand];
                }
              }
            }
          }
        },
        kClipRowTile);
  }
  return best_val;
}

std::vector<float> SearchClipReference(const float* w, int64_t out, int64_t in, const float* x,
                                       int64_t n_tokens, const QuantParams& p, int n_grid,
                                       double max_shrink, int64_t n_sample_token) {
  CheckPositive("output width", out);
  const int64_t gs = GroupSize(p, in);
  const int64_t ng = in / gs;
  const std::vector<float> factors = ShrinkFactors(n_grid, max_shrink);
  int64_t t_used = 0;
  const std::vector<float> xs = SampleTokens(x, n_tokens, in, n_sample_token, &t_used);
  std::vector<float> best_val = GroupAbsMax(w, out, in, gs);
  QuantParams one_group = p;
  one_group.group_size = gs;
  std::vector<float> q(static_cast<size_t>(gs));
  std::vector<double> org(static_cast<size_t>(t_used));
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t g = 0; g < ng; ++g) {
      const float* wg = w + o * in + g * gs;
      for (int64_t t = 0; t < t_used; ++t) {
        double acc = 0;
        for (int64_t k = 0; k < gs; ++k) acc += double{xs[t * in + g * gs + k]} * wg[k];
        org[t] = acc;
      }
      const float org_max = best_val[o * ng + g];
      double best_err = std::numeric_limits<double>::infinity();
      for (size_t c = 0; c < factors.size(); ++c) {
        const float mv = org_max * factors[c];
        for (int64_t k = 0; k < gs; ++k) q[k] = std::min(std::max(wg[k], -mv), mv);
        FakeQuantize(q.data(), 1, gs, one_group);
        double err = 0;
        for (int64_t t = 0; t < t_used; ++t) {
          double acc = 0;
          for (int64_t k = 0; k < gs; ++k) acc += double{xs[t * in + g * gs + k]} * q[k];
          err += (acc - org[t]) * (acc - org[t]);
        }
        err /= static_cast<double>(t_used);
        if (err < best_err) {
          best_err = err;
          best_val[o * ng + g] = mv;
        }
      }
    }
  }
  return best_val;
}

void ApplyClip(float* w, int64_t out, int64_t in, const std::vector<float>& max_val,
               int64_t group_size) {
  QuantParams shape_only;
  shape_only.group_size = group_size;
  const int64_t gs = GroupSize(shape_only, in);
  const int64_t ng = in / gs;
  if (static_cast<int64_t>(max_val.size()) != out * ng) {
    throw Error("clip: " + std::to_string(max_val.size()) + " max values for " +
                std::to_string(out) + " rows x " + std::to_string(ng) + " groups");
  }
  for (int64_t i = 0; i < out * ng; ++i) {
    const float mv = max_val[i];
    float* wg = w + i * gs;
    for (int64_t k = 0; k < gs; ++k) wg[k] = std::min(std::max(wg[k], -mv), mv);
  }
}

bool ClipSkipped(const std::string& module_name) {
  const size_t dot = module_name.rfind('.');
  const std::string last = dot == std::string::npos ? module_name : module_name.substr(dot + 1);
  for (const char* pattern : {"q_", "k_", "query", "key", "Wqkv"}) {
    if (last.find(pattern) != std::string::npos) return true;
  }
  return false;
}

double MeanSquaredError(const std::vector<float>& a, const std::vector<float>& b) {
  AWQ_CHECK(a.size() == b.size());
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = static_cast<double>(a[i]) - b[i];
    s += e * e;
  }
  return s / static_cast<double>(a.size());
}

namespace {

// The group's rows, total, checked against the input width and the group size.
int64_t CheckGroup(const std::vector<GroupLinear>& group, int64_t in, const float* x,
                   int64_t n_tokens) {
  if (group.empty()) throw Error("awq search: a group needs at least one linear");
  CheckPositive("input width", in);
  CheckPositive("n_tokens", n_tokens);
  if (x == nullptr) throw Error("awq search: no input activations");
  int64_t rows = 0;
  for (const GroupLinear& l : group) {
    if (l.w == nullptr) throw Error("awq search: linear '" + l.name + "' has no weights");
    CheckPositive("rows", l.rows);
    if (l.params) GroupSize(*l.params, in);
    rows += l.rows;
  }
  return rows;
}

}  // namespace

double GramSquaredError(const float* w, const float* cand, int64_t rows, int64_t in,
                        const std::vector<float>& gram) {
  AWQ_CHECK(static_cast<int64_t>(gram.size()) == in * in);
  std::vector<double> row_err(static_cast<size_t>(rows));
  constexpr int64_t kTile = 16;
  ThreadPool::Global().ParallelFor(
      rows,
      [&](int64_t r0, int64_t r1, int) {
        std::vector<float> dlt(static_cast<size_t>(kTile * in)), e(static_cast<size_t>(kTile * in));
        for (int64_t t0 = r0; t0 < r1; t0 += kTile) {
          const int64_t m = std::min(kTile, r1 - t0);
          for (int64_t i = 0; i < m * in; ++i) dlt[i] = cand[t0 * in + i] - w[t0 * in + i];
          // e = d G (G is symmetric, so G^T as LinearF32's layout wants is G itself).
          SgemmSerial(false, false, m, in, in, 1.0f, dlt.data(), in, gram.data(), in, 0.0f,
                      e.data(), in);
          for (int64_t i = 0; i < m; ++i) {
            double acc = 0;
            for (int64_t k = 0; k < in; ++k) acc += double{e[i * in + k]} * dlt[i * in + k];
            row_err[t0 + i] = acc;
          }
        }
      },
      kTile);
  double total = 0;
  for (double v : row_err) total += v;
  return total;
}

bool GramIsCheaper(int64_t rows, int64_t in, int64_t n_tokens, int64_t n_cand) {
  const double direct = static_cast<double>(n_tokens) * rows * in * n_cand;
  const double gram =
      static_cast<double>(n_tokens) * in * in + static_cast<double>(n_cand) * rows * in * in;
  return gram < direct;
}

ScaleSearchResult SearchOwnOutputScales(const std::vector<GroupLinear>& group, int64_t in,
                                        const float* x, int64_t n_tokens,
                                        const QuantConfig& config) {
  const int64_t rows = CheckGroup(group, in, x, n_tokens);
  std::vector<const float*> ws;
  std::vector<int64_t> row_counts;
  bool contiguous = true;
  for (size_t i = 0; i < group.size(); ++i) {
    ws.push_back(group[i].w);
    row_counts.push_back(group[i].rows);
    if (i > 0 && group[i].w != group[i - 1].w + group[i - 1].rows * in) contiguous = false;
  }
  const std::vector<float> x_mean = ChannelMeanAbs(x, n_tokens, in);
  const std::vector<float> w_mean = WeightMeanNormalized(ws, row_counts, in, config.q_group_size);
  // The stacked original weights [rows, in]: the linears themselves when they are consecutive
  // rows of one matrix (a fused slot), else a copy.
  std::vector<float> stacked;
  const float* w_all = group[0].w;
  if (!contiguous) {
    stacked.resize(static_cast<size_t>(rows * in));
    float* p = stacked.data();
    for (const GroupLinear& l : group) {
      std::memcpy(p, l.w, static_cast<size_t>(l.rows * in) * sizeof(float));
      p += l.rows * in;
    }
    w_all = stacked.data();
  }
  ThreadPool& pool = ThreadPool::Global();
  std::vector<float> cand(static_cast<size_t>(rows * in));
  const auto fill = [&](const std::vector<float>& s) {
    float* p = cand.data();
    for (const GroupLinear& l : group) {
      if (l.params) {
        ScaleQuantizeUnscale(l.w, p, l.rows, in, s, *l.params);
      } else {
        std::memcpy(p, l.w, static_cast<size_t>(l.rows * in) * sizeof(float));
      }
      p += l.rows * in;
    }
  };
  const double denom = static_cast<double>(n_tokens) * static_cast<double>(rows);
  std::function<double(const std::vector<float>&)> loss;
  std::vector<float> gram, reference, out;
  if (GramIsCheaper(rows, in, n_tokens, config.n_grid + 1)) {
    HessianAccumulator acc(in);
    acc.Add(x, n_tokens);
    gram.assign(acc.Sum().begin(), acc.Sum().end());
    loss = [&](const std::vector<float>& s) {
      fill(s);
      return GramSquaredError(w_all, cand.data(), rows, in, gram) / denom;
    };
  } else {
    // The reference output of the group with the original weights, [n_tokens, rows].
    reference.resize(static_cast<size_t>(n_tokens * rows));
    LinearF32(x, in, w_all, in, reference.data(), rows, n_tokens, rows, in, false, pool);
    out.resize(reference.size());
    loss = [&](const std::vector<float>& s) {
      fill(s);
      LinearF32(x, in, cand.data(), in, out.data(), rows, n_tokens, rows, in, false, pool);
      return MeanSquaredError(reference, out);
    };
  }
  // Including s = 1 guards against duo scaling's r = 0 not being the identity (AWQ.md).
  return SearchScales(x_mean, w_mean, config.n_grid, config.duo_scaling,
                      /*include_identity=*/true, loss);
}

std::vector<std::vector<float>> FoldScalesAndClip(const std::vector<GroupLinear>& group, int64_t in,
                                                  float* x, int64_t n_tokens,
                                                  const std::vector<float>& s,
                                                  const QuantConfig& config) {
  CheckGroup(group, in, x, n_tokens);
  if (static_cast<int64_t>(s.size()) != in) {
    throw Error("awq search: " + std::to_string(s.size()) + " scales for input width " +
                std::to_string(in));
  }
  for (const GroupLinear& l : group) {
    for (int64_t r = 0; r < l.rows; ++r) {
      for (int64_t c = 0; c < in; ++c) l.w[r * in + c] *= s[static_cast<size_t>(c)];
    }
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t c = 0; c < in; ++c) x[t * in + c] /= s[static_cast<size_t>(c)];
  }
  std::vector<std::vector<float>> max_vals(group.size());
  if (!config.apply_clip) return max_vals;
  for (size_t i = 0; i < group.size(); ++i) {
    const GroupLinear& l = group[i];
    if (!l.params || ClipSkipped(l.name)) continue;
    max_vals[i] = SearchClip(l.w, l.rows, in, x, n_tokens, *l.params, config.n_grid,
                             config.max_shrink, config.n_sample_token);
    ApplyClip(l.w, l.rows, in, max_vals[i], GroupSize(*l.params, in));
  }
  return max_vals;
}

}  // namespace awq
