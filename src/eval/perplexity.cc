// Windowed perplexity; logits are computed in row chunks so a 2048 x 49152 matrix never exists.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "awq/eval.h"
#include "awq/model.h"
#include "kernels/cpu/ops.h"

namespace awq {

namespace {
// Rows of logits computed at once: 256 x 49152 floats = 48 MiB, enough for GEMM efficiency.
constexpr int64_t kLogitRows = 256;
}  // namespace

PerplexityResult EvaluatePerplexity(const Model& model, const std::vector<int32_t>& tokens,
                                    const PerplexityOptions& options) {
  const int64_t ctx = options.ctx;
  if (ctx < 2) throw Error("--ctx must be at least 2, got " + std::to_string(ctx));
  int64_t avail = static_cast<int64_t>(tokens.size());
  if (options.max_tokens >= 0) avail = std::min(avail, options.max_tokens);
  const int64_t n_windows = avail / ctx;
  if (n_windows == 0) {
    throw Error("perplexity needs at least one window of " + std::to_string(ctx) +
                " tokens, but the text has " + std::to_string(avail));
  }
  const int64_t d = model.config().hidden_size, v = model.config().vocab_size;
  const auto t0 = std::chrono::steady_clock::now();
  KvCache cache = model.NewCache(ctx);
  std::vector<float> hidden(static_cast<size_t>(ctx * d));
  std::vector<float> logits(static_cast<size_t>(kLogitRows * v));
  PerplexityResult r;
  for (int64_t w = 0; w < n_windows; ++w) {
    const int32_t* win = tokens.data() + w * ctx;
    cache.Clear();
    model.Forward(win, ctx, cache, hidden.data());
    // Position t predicts token t + 1; the last position predicts nothing in this window.
    for (int64_t r0 = 0; r0 < ctx - 1; r0 += kLogitRows) {
      const int64_t rows = std::min(kLogitRows, ctx - 1 - r0);
      model.Logits(hidden.data() + r0 * d, rows, logits.data());
      for (int64_t i = 0; i < rows; ++i) {
        const float* row = logits.data() + i * v;
        r.nll_sum += LogSumExpRow(row, v) - row[win[r0 + i + 1]];
      }
    }
    r.n_predicted += ctx - 1;
    r.n_tokens += ctx;
    ++r.n_windows;
    if (options.progress) options.progress(r.n_tokens, n_windows * ctx);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = static_cast<double>(r.n_tokens) / r.seconds;
  r.perplexity = std::exp(r.nll_sum / static_cast<double>(r.n_predicted));
  return r;
}

}  // namespace awq
