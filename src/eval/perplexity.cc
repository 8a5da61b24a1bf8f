// Windowed perplexity under awq.cpp's protocol or llama-perplexity's (include/awq/eval.h); logits
// are computed in row chunks so a 2048 x 49152 matrix never exists.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "awq/error.h"
#include "awq/eval.h"
#include "awq/model.h"
#include "kernels/cpu/ops.h"

namespace awq {

namespace {
// Rows of logits computed at once: 256 x 49152 floats = 48 MiB, enough for GEMM efficiency.
constexpr int64_t kLogitRows = 256;

// A Model as a LogitSource: one forward pass per window, logits of the requested rows only.
class ModelLogits final : public LogitSource {
 public:
  ModelLogits(const Model& model, int64_t max_len)
      : model_(model),
        cache_(model.NewCache(max_len)),
        hidden_(static_cast<size_t>(max_len * model.config().hidden_size)) {}
  int64_t vocab_size() const override { return model_.config().vocab_size; }
  void Run(const int32_t* tokens, int64_t n) override {
    cache_.Clear();
    model_.Forward(tokens, n, cache_, hidden_.data());
  }
  void Logits(int64_t row0, int64_t rows, float* out) override {
    model_.Logits(hidden_.data() + row0 * model_.config().hidden_size, rows, out);
  }

 private:
  const Model& model_;
  KvCache cache_;
  std::vector<float> hidden_;
};
}  // namespace

const char* PerplexityProtocolName(PerplexityProtocol p) {
  return p == PerplexityProtocol::kLlamaCpp ? "llama.cpp" : "awq";
}

PerplexityProtocol ParsePerplexityProtocol(const std::string& name) {
  if (name == "awq") return PerplexityProtocol::kAwq;
  if (name == "llama.cpp" || name == "llamacpp") return PerplexityProtocol::kLlamaCpp;
  throw Error("unknown perplexity protocol \"" + name + "\"; expected awq or llama.cpp");
}

std::vector<PerplexityWindow> PlanPerplexityWindows(int64_t n_tokens,
                                                    const PerplexityOptions& options) {
  const int64_t ctx = options.ctx;
  std::vector<PerplexityWindow> windows;
  if (options.protocol == PerplexityProtocol::kAwq) {
    if (ctx < 2) throw Error("--ctx must be at least 2, got " + std::to_string(ctx));
    int64_t avail = n_tokens;
    if (options.max_tokens >= 0) avail = std::min(avail, options.max_tokens);
    const int64_t n_windows = avail / ctx;
    if (n_windows == 0) {
      throw Error("perplexity needs at least one window of " + std::to_string(ctx) +
                  " tokens, but the text has " + std::to_string(avail));
    }
    for (int64_t w = 0; w < n_windows; ++w) windows.push_back({w * ctx, ctx, 0, -1});
    return windows;
  }
  // llama-perplexity: first = n_ctx / 2 and n_ctx - first - 1 scored tokens, so n_ctx >= 3.
  if (ctx < 3) {
    throw Error("--ctx must be at least 3 under the llama.cpp protocol, got " +
                std::to_string(ctx));
  }
  // Its check is on the whole text, before --chunks limits the chunks.
  if (n_tokens < 2 * ctx) {
    throw Error("the llama.cpp protocol needs at least " + std::to_string(2 * ctx) +
                " tokens (2 x ctx), but the text has " + std::to_string(n_tokens));
  }
  int64_t n_chunks = n_tokens / ctx;
  if (options.max_tokens >= 0) n_chunks = std::min(n_chunks, options.max_tokens / ctx);
  if (n_chunks == 0) {
    throw Error("--max-tokens " + std::to_string(options.max_tokens) + " holds no whole chunk of " +
                std::to_string(ctx) + " tokens");
  }
  for (int64_t c = 0; c < n_chunks; ++c) windows.push_back({c * ctx, ctx, ctx / 2, options.bos_id});
  return windows;
}

PerplexityResult EvaluatePerplexity(LogitSource& source, const std::vector<int32_t>& tokens,
                                    const PerplexityOptions& options) {
  const std::vector<PerplexityWindow> windows =
      PlanPerplexityWindows(static_cast<int64_t>(tokens.size()), options);
  int64_t total = 0, max_len = 0;
  for (const PerplexityWindow& w : windows) {
    total += w.length;
    max_len = std::max(max_len, w.length);
  }
  const int64_t v = source.vocab_size();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> win(static_cast<size_t>(max_len));
  std::vector<float> logits(static_cast<size_t>(kLogitRows * v));
  PerplexityResult r;
  for (const PerplexityWindow& w : windows) {
    std::copy_n(tokens.begin() + w.start, w.length, win.begin());
    if (w.first_token >= 0) win[0] = w.first_token;
    source.Run(win.data(), w.length);
    // Position t predicts token t + 1; the last position predicts nothing in this window. The
    // targets are never the replaced first token (t + 1 >= 1).
    for (int64_t r0 = w.score_from; r0 < w.length - 1; r0 += kLogitRows) {
      const int64_t rows = std::min(kLogitRows, w.length - 1 - r0);
      source.Logits(r0, rows, logits.data());
      for (int64_t i = 0; i < rows; ++i) {
        const float* row = logits.data() + i * v;
        r.nll_sum += LogSumExpRow(row, v) - row[win[r0 + i + 1]];
      }
    }
    r.n_predicted += w.length - 1 - w.score_from;
    r.n_tokens += w.length;
    ++r.n_windows;
    if (options.progress) options.progress(r.n_tokens, total);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = static_cast<double>(r.n_tokens) / r.seconds;
  r.perplexity = std::exp(r.nll_sum / static_cast<double>(r.n_predicted));
  return r;
}

PerplexityResult EvaluatePerplexity(const Model& model, const std::vector<int32_t>& tokens,
                                    const PerplexityOptions& options) {
  // Plan first so a too-short text fails before the KV cache is allocated.
  const std::vector<PerplexityWindow> windows =
      PlanPerplexityWindows(static_cast<int64_t>(tokens.size()), options);
  int64_t max_len = 0;
  for (const PerplexityWindow& w : windows) max_len = std::max(max_len, w.length);
  ModelLogits source(model, max_len);
  return EvaluatePerplexity(source, tokens, options);
}

}  // namespace awq
