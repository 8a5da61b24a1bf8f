// GPTQ for one linear: Hessian accumulation, the inverse-Hessian factor (dead inputs,
// dampening, act-order permutation, Cholesky in double) and the blocked column sweep.
#include "awq/gptq.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <mutex>
#include <numeric>
#include <string>

#include "awq/error.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/sgemm.h"

namespace awq {

namespace {

// Tokens per sgemm in HessianAccumulator::Add: bounds the transposed copy ([in, chunk] fp32,
// 6 MiB at in = 1536) while keeping the product large enough to run at sgemm speed. Each chunk's
// fp32 sum is added to the double total, so rounding does not grow with the token count.
constexpr int64_t kHessianChunk = 1024;

// Rows per task of the sweep. Tiles are fixed, so each row's arithmetic (including the sgemm of
// the lazy update) is the same whatever the number of threads.
constexpr int64_t kTileRows = 16;

// Multiply-adds below which a step of the factorization runs on the calling thread.
constexpr int64_t kMinParallelMacs = 1 << 17;

// Dot product with four independent partial sums, a fixed-length inner loop GCC vectorizes.
inline double Dot(const double* a, const double* b, int64_t n) {
  double acc[4] = {0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    for (int l = 0; l < 4; ++l) acc[l] += a[k + l] * b[k + l];
  }
  double s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; k < n; ++k) s += a[k] * b[k];
  return s;
}

// s[c] = sum_{k < n} a[k] * b[c][k] for four rows b[c]: one pass over `a` serves four dot
// products, which quarters the memory traffic of the triangular loops below (their matrices,
// 18 MiB at n = 1536, live in L3, not L2). Four partial sums per row keep the loop vectorizable.
inline void Dot4(const double* a, const double* const b[4], int64_t n, double s[4]) {
  double acc[4][4] = {};
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 4; ++l) acc[c][l] += a[k + l] * b[c][k + l];
    }
  }
  for (int c = 0; c < 4; ++c) {
    s[c] = (acc[c][0] + acc[c][1]) + (acc[c][2] + acc[c][3]);
    for (int64_t kk = k; kk < n; ++kk) s[c] += a[kk] * b[c][kk];
  }
}

// In place: the lower triangle of a [n, n] (symmetric, row-major) becomes L with a = L L^T.
// Crout order, four columns at a time: the 4x4 diagonal block row by row, then every row below
// it (independent of each other, so split over the pool) takes its four dot products against
// the block's rows in one pass. Returns the index of the first pivot that is not positive, or
// -1 on success.
int64_t CholeskyLower(double* a, int64_t n) {
  constexpr int64_t kCols = 4;
  for (int64_t j0 = 0; j0 < n; j0 += kCols) {
    const int64_t jb = std::min(kCols, n - j0);
    for (int64_t i = j0; i < j0 + jb; ++i) {
      double* ai = a + i * n;
      for (int64_t j = j0; j < i; ++j) {
        const double* aj = a + j * n;
        ai[j] = (ai[j] - Dot(ai, aj, j)) / aj[j];
      }
      const double pivot = ai[i] - Dot(ai, ai, i);
      if (!(pivot > 0) || !std::isfinite(pivot)) return i;
      ai[i] = std::sqrt(pivot);
    }
    const double* b[4];
    for (int c = 0; c < 4; ++c) b[c] = a + (j0 + std::min<int64_t>(c, jb - 1)) * n;
    const int64_t below = n - j0 - jb;
    if (below <= 0) continue;
    const auto rows = [&](int64_t r0, int64_t r1, int) {
      for (int64_t i = j0 + jb + r0; i < j0 + jb + r1; ++i) {
        double* ai = a + i * n;
        double s[4];
        Dot4(ai, b, j0, s);
        for (int64_t c = 0; c < jb; ++c) {
          const int64_t j = j0 + c;
          double v = ai[j] - s[c];
          for (int64_t k = j0; k < j; ++k) v -= ai[k] * b[c][k];
          ai[j] = v / b[c][j];
        }
      }
    };
    // Waking the pool costs microseconds (milliseconds on a loaded machine): small panels run
    // on the calling thread.
    if (below * (j0 + kCols) < kMinParallelMacs) {
      rows(0, below, 0);
    } else {
      ThreadPool::Global().ParallelFor(below, rows);
    }
  }
  return -1;
}

// t [n, n] (upper triangle) = (L^-1)^T for the lower-triangular L in l [n, n]: row j of t is
// column j of L^-1, found by forward substitution (t[j][i] = -sum_{k in [j, i)} L[i][k] t[j][k] /
// L[i][i]), reading contiguous rows. Rows are independent; tasks take four consecutive rows
// (one pass over L serves them, Dot4) and are paired with their mirror image so that every
// task has about the same work.
void InverseLowerTransposed(const double* l, int64_t n, double* t) {
  std::fill(t, t + n * n, 0.0);
  constexpr int64_t kRows = 4;
  const int64_t n_quads = (n + kRows - 1) / kRows;
  const auto quad = [&](int64_t qi) {
    const int64_t j0 = qi * kRows, jb = std::min(kRows, n - j0);
    double* tr[4];
    for (int c = 0; c < 4; ++c) tr[c] = t + (j0 + std::min<int64_t>(c, jb - 1)) * n;
    const double* trc[4] = {tr[0], tr[1], tr[2], tr[3]};
    for (int64_t i = j0; i < n; ++i) {
      const double* li = l + i * n;
      // Entries of row j left of j are 0, so one dot over [j0, i) serves all four rows.
      double s[4];
      Dot4(li + j0,
           std::array<const double*, 4>{trc[0] + j0, trc[1] + j0, trc[2] + j0, trc[3] + j0}.data(),
           i - j0, s);
      for (int64_t c = 0; c < jb; ++c) {
        const int64_t j = j0 + c;
        if (i == j) tr[c][i] = 1.0 / li[i];
        if (i > j) tr[c][i] = -s[c] / li[i];
      }
    }
  };
  ThreadPool::Global().ParallelFor((n_quads + 1) / 2, [&](int64_t b, int64_t e, int) {
    for (int64_t p = b; p < e; ++p) {
      quad(p);
      if (n_quads - 1 - p != p) quad(n_quads - 1 - p);
    }
  });
}

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

}  // namespace

void GptqOptions::Validate() const {
  if (!std::isfinite(damp_percent) || damp_percent < 0 || damp_percent >= 1) {
    throw Error("gptq: damp_percent = " + Num(damp_percent) + " is not in [0, 1)");
  }
  if (block_size <= 0) {
    throw Error("gptq: block_size = " + std::to_string(block_size) + " is not positive");
  }
}

HessianAccumulator::HessianAccumulator(int64_t in) : in_(in) {
  if (in <= 0) throw Error("gptq: Hessian width " + std::to_string(in) + " is not positive");
  sum_.assign(static_cast<size_t>(in * in), 0.0);
}

void HessianAccumulator::Add(const float* x, int64_t n) {
  if (n <= 0) return;
  const int64_t chunk = std::min(n, kHessianChunk);
  std::vector<float> xt(static_cast<size_t>(in_ * chunk));
  std::vector<float> g(static_cast<size_t>(in_ * in_));
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t c = std::min(chunk, n - t0);
    // xt [in, c] = x[t0 : t0 + c]^T, so that g = xt xt^T is the linear-layer product LinearF32
    // computes (y = x w^T).
    for (int64_t t = 0; t < c; ++t) {
      const float* xr = x + (t0 + t) * in_;
      for (int64_t i = 0; i < in_; ++i) xt[static_cast<size_t>(i * c + t)] = xr[i];
    }
    LinearF32(xt.data(), c, xt.data(), c, g.data(), in_, in_, in_, c, false, ThreadPool::Global());
    for (size_t i = 0; i < g.size(); ++i) sum_[i] += g[i];
  }
  n_ += n;
}

std::vector<double> HessianAccumulator::Hessian() const {
  if (n_ == 0) throw Error("gptq: no calibration tokens were added to the Hessian");
  std::vector<double> h(sum_);
  const double f = 2.0 / static_cast<double>(n_);
  for (double& v : h) v *= f;
  return h;
}

GptqFactor PrepareGptqHessian(std::vector<double> h, int64_t in, const GptqOptions& o,
                              const std::string& name) {
  o.Validate();
  if (in <= 0 || h.size() != static_cast<size_t>(in * in)) {
    throw Error(name + ": GPTQ Hessian has " + std::to_string(h.size()) + " entries, expected " +
                std::to_string(in) + " x " + std::to_string(in));
  }
  for (size_t i = 0; i < h.size(); ++i) {
    if (!std::isfinite(h[i])) {
      throw Error(name + ": GPTQ Hessian entry (" + std::to_string(i / in) + ", " +
                  std::to_string(i % in) + ") is not finite (non-finite calibration activations)");
    }
  }
  GptqFactor f;
  f.in = in;
  f.dead.assign(static_cast<size_t>(in), 0);
  // An input that is zero for every token (H_ii == 0) carries no information: its weights are
  // zeroed and H_ii = 1 keeps H invertible (as GPTQ does).
  double diag_sum = 0;
  for (int64_t i = 0; i < in; ++i) {
    double& hii = h[static_cast<size_t>(i * in + i)];
    if (hii == 0) {
      hii = 1;
      f.dead[static_cast<size_t>(i)] = 1;
    }
    diag_sum += hii;
  }
  f.perm.resize(static_cast<size_t>(in));
  std::iota(f.perm.begin(), f.perm.end(), int64_t{0});
  if (o.act_order) {
    // Descending diag(H); ties keep the original order (stable), so the order is reproducible.
    std::stable_sort(f.perm.begin(), f.perm.end(), [&](int64_t a, int64_t b) {
      return h[static_cast<size_t>(a * in + a)] > h[static_cast<size_t>(b * in + b)];
    });
  }
  const double damp = o.damp_percent * diag_sum / static_cast<double>(in);
  for (int64_t i = 0; i < in; ++i) h[static_cast<size_t>(i * in + i)] += damp;

  // GPTQ wants U, upper triangular with U^T U = H^-1 (in processing order). Writing
  // H = V V^T with V = U^-1 upper triangular, V is the Cholesky factor of H with rows and
  // columns reversed: with R the reversal, R H R = (R V R)(R V R)^T and R V R is lower. So one
  // Cholesky of the reversed H and one triangular inverse give U, instead of GPTQ's Cholesky,
  // inverse and second Cholesky (half the work; the test checks it against that route).
  std::vector<double> a(static_cast<size_t>(in * in));
  for (int64_t r = 0; r < in; ++r) {
    const int64_t pr = f.perm[static_cast<size_t>(in - 1 - r)];
    for (int64_t c = 0; c <= r; ++c) {
      const int64_t pc = f.perm[static_cast<size_t>(in - 1 - c)];
      a[static_cast<size_t>(r * in + c)] = h[static_cast<size_t>(pr * in + pc)];
    }
  }
  h.clear();
  h.shrink_to_fit();
  const int64_t bad = CholeskyLower(a.data(), in);
  if (bad >= 0) {
    throw Error(name + ": GPTQ: the Hessian of the calibration inputs is not positive definite " +
                "after dampening with damp_percent " + Num(o.damp_percent) + " (pivot " +
                std::to_string(in - 1 - bad) + " of " + std::to_string(in) +
                "); use a larger damp_percent (--damp-percent, e.g. 0.1) or more calibration data");
  }
  std::vector<double> t(static_cast<size_t>(in * in));
  InverseLowerTransposed(a.data(), in, t.data());
  // U = R L^-1 R: U[a][b] = L^-1[n-1-a][n-1-b] = t[n-1-b][n-1-a].
  f.hinv.assign(static_cast<size_t>(in * in), 0.0f);
  for (int64_t r = 0; r < in; ++r) {
    for (int64_t c = r; c < in; ++c) {
      f.hinv[static_cast<size_t>(r * in + c)] =
          static_cast<float>(t[static_cast<size_t>((in - 1 - c) * in + (in - 1 - r))]);
    }
  }
  return f;
}

GptqResult GptqQuantize(const float* w, int64_t out, int64_t in, const GptqFactor& factor,
                        const QuantParams& p, const GptqOptions& o, const std::string& name) {
  o.Validate();
  if (p.bits < 2 || p.bits > 8) {
    throw Error(name + ": quantizer: bits = " + std::to_string(p.bits) +
                " is not supported (2..8)");
  }
  int64_t gs = 0;
  try {
    gs = GroupSize(p, in);
  } catch (const Error& e) {
    throw Error(name + ": " + e.what());
  }
  if (out <= 0) throw Error(name + ": output width " + std::to_string(out) + " is not positive");
  if (factor.in != in || factor.hinv.size() != static_cast<size_t>(in * in)) {
    throw Error(name + ": GPTQ factor is for input width " + std::to_string(factor.in) +
                ", the linear has " + std::to_string(in));
  }
  for (int64_t i = 0; i < out * in; ++i) {
    if (!std::isfinite(w[i])) {
      throw Error(name + ": weight at row " + std::to_string(i / in) + ", column " +
                  std::to_string(i % in) + " is not finite");
    }
  }
  const int64_t ng = in / gs;
  const int64_t bs = o.block_size;
  const bool static_groups = o.act_order;
  const float* u = factor.hinv.data();
  const int64_t* perm = factor.perm.data();
  const uint8_t* dead = factor.dead.data();

  GptqResult res;
  QuantizedLinear& q = res.q;
  q.out = out;
  q.in = in;
  q.params = p;
  q.q.resize(static_cast<size_t>(out * in));
  q.scales.resize(static_cast<size_t>(out * ng));
  if (p.zero_point) q.zeros.resize(static_cast<size_t>(out * ng));

  const int64_t n_tiles = (out + kTileRows - 1) / kTileRows;
  std::vector<double> tile_loss(static_cast<size_t>(n_tiles), 0.0);
  std::mutex err_mu;
  std::string first_error;

  const auto sweep_tile = [&](int64_t tile) {
    const int64_t r0 = tile * kTileRows, nr = std::min(kTileRows, out - r0);
    std::vector<float> wt(static_cast<size_t>(nr * in));   // [nr, in] processing order
    std::vector<float> err(static_cast<size_t>(nr * bs));  // [nr, bs] scaled errors
    std::vector<GroupGrid> grid(static_cast<size_t>(nr * ng));
    std::vector<float> tmp(static_cast<size_t>(gs));
    for (int64_t r = 0; r < nr; ++r) {
      const float* src = w + (r0 + r) * in;
      if (static_groups) {
        // Static groups: fit every contiguous group of the original (dead-zeroed) row now.
        for (int64_t g = 0; g < ng; ++g) {
          for (int64_t k = 0; k < gs; ++k) tmp[k] = dead[g * gs + k] ? 0.0f : src[g * gs + k];
          grid[r * ng + g] = FitGroupGrid(tmp.data(), gs, p);
        }
      }
      float* dst = wt.data() + r * in;
      for (int64_t j = 0; j < in; ++j) dst[j] = dead[perm[j]] ? 0.0f : src[perm[j]];
    }
    double loss = 0;
    for (int64_t i1 = 0; i1 < in; i1 += bs) {
      const int64_t i2 = std::min(i1 + bs, in), cnt = i2 - i1;
      for (int64_t i = i1; i < i2; ++i) {
        const int64_t col = perm[i], g = col / gs;
        if (!static_groups && col % gs == 0) {
          // Without act_order perm is the identity, so the group is columns [i, i + gs). Fit it
          // on the weights as the sweep has updated them: columns past this block still miss
          // the lazy update of the block's columns done so far, so add it here.
          for (int64_t r = 0; r < nr; ++r) {
            const float* wr = wt.data() + r * in;
            std::copy(wr + i, wr + i + gs, tmp.begin());
            for (int64_t c = std::max(i2, i); c < i + gs; ++c) {
              float v = tmp[c - i];
              for (int64_t k = i1; k < i; ++k) v -= err[r * bs + (k - i1)] * u[k * in + c];
              tmp[c - i] = v;
            }
            grid[r * ng + g] = FitGroupGrid(tmp.data(), gs, p);
          }
        }
        const float d = u[i * in + i];
        const float* ui = u + i * in;
        for (int64_t r = 0; r < nr; ++r) {
          float* wr = wt.data() + r * in;
          const GroupGrid& gg = grid[r * ng + g];
          const float wv = wr[i];
          const float off = GridOffset(wv, gg);
          const float qv = off * gg.scale;
          q.q[static_cast<size_t>((r0 + r) * in + col)] =
              static_cast<uint8_t>(static_cast<int>(off) + gg.zero);
          const float e = (wv - qv) / d;
          const double dq = static_cast<double>(wv) - qv;
          loss += dq * dq / (static_cast<double>(d) * d);
          err[r * bs + (i - i1)] = e;
          for (int64_t c = i + 1; c < i2; ++c) wr[c] -= e * ui[c];
        }
      }
      // Lazy batch update: W[:, i2:] -= Err [nr, cnt] * U[i1:i2, i2:].
      if (i2 < in) {
        SgemmSerial(false, false, nr, in - i2, cnt, -1.0f, err.data(), bs, u + i1 * in + i2, in,
                    1.0f, wt.data() + i2, in);
      }
    }
    for (int64_t r = 0; r < nr; ++r) {
      for (int64_t g = 0; g < ng; ++g) {
        q.scales[static_cast<size_t>((r0 + r) * ng + g)] = grid[r * ng + g].scale;
        if (p.zero_point) {
          q.zeros[static_cast<size_t>((r0 + r) * ng + g)] =
              static_cast<uint8_t>(grid[r * ng + g].zero);
        }
      }
    }
    tile_loss[static_cast<size_t>(tile)] = loss / 2;
  };
  // Exceptions must not leave a pool task: the first one is kept and rethrown here.
  ThreadPool::Global().ParallelFor(n_tiles, [&](int64_t b, int64_t e, int) {
    for (int64_t tile = b; tile < e; ++tile) {
      try {
        sweep_tile(tile);
      } catch (const Error& ex) {
        std::lock_guard<std::mutex> lock(err_mu);
        if (first_error.empty()) first_error = ex.what();
      }
    }
  });
  if (!first_error.empty()) {
    throw Error(name + ": GPTQ: " + first_error +
                " (the error updates diverged; try a larger damp_percent)");
  }
  for (double l : tile_loss) res.loss += l;
  return res;
}

}  // namespace awq
