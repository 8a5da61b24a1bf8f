// Eval throughput of the fp32 forward pass next to the machine's sgemm peak, measured in the
// same run: tokens/s of windowed perplexity, the matrix FLOP/s it sustains, and that as a
// fraction of a large square sgemm on all cores.
//
//   build/bench/forward_bench MODEL TEXT [CTX=2048] [TOKENS=4096]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "awq/eval.h"
#include "awq/gguf.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "awq/tokenizer.h"
#include "core/mapped_file.h"
#include "kernels/cpu/sgemm.h"

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Best of `reps` runs of an n x n x n product through the same path the model uses.
double SgemmPeakGflops(int64_t n, int reps) {
  std::vector<float> a(static_cast<size_t>(n * n), 0.5f), b(a.size(), 0.25f), c(a.size());
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    awq::LinearF32(a.data(), n, b.data(), n, c.data(), n, n, n, n, false,
                   awq::ThreadPool::Global());
    best = std::max(best, 2.0 * n * n * n / Seconds(t0) / 1e9);
  }
  return best;
}

// Matrix FLOPs of one window of `ctx` tokens: the linears, causal attention and the LM head.
double WindowFlops(const awq::ModelConfig& c, int64_t ctx) {
  const double t = static_cast<double>(ctx), d = static_cast<double>(c.hidden_size);
  const double q = static_cast<double>(c.num_attention_heads * c.head_dim);
  const double kv = static_cast<double>(c.num_key_value_heads * c.head_dim);
  const double inter = static_cast<double>(c.intermediate_size);
  const double linears =
      2 * t * d * (q + 2 * kv) + 2 * t * q * d + 2 * t * d * 2 * inter + 2 * t * inter * d;
  const double attention = 2.0 * 2.0 * q * t * (t + 1) / 2;  // QK^T and PV over visible keys
  const double head = 2 * (t - 1) * d * static_cast<double>(c.vocab_size);
  return static_cast<double>(c.num_hidden_layers) * (linears + attention) + head;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL TEXT [CTX=2048] [TOKENS=4096]\n", argv[0]);
    return 2;
  }
  const std::string model_path = argv[1], text_path = argv[2];
  const int64_t ctx = argc > 3 ? std::atoll(argv[3]) : 2048;
  const int64_t n_tokens = argc > 4 ? std::atoll(argv[4]) : 4096;
  try {
    const awq::Model model = awq::Model::Load(model_path);
    const awq::Tokenizer tok = awq::Tokenizer::FromGguf(awq::GgufFile::Open(model_path));
    const std::vector<int32_t> ids = tok.Encode(awq::ReadFileToString(text_path), true, false);

    const double peak = SgemmPeakGflops(2048, 3);
    awq::PerplexityOptions opt;
    opt.ctx = ctx;
    opt.max_tokens = n_tokens;
    const awq::PerplexityResult r = awq::EvaluatePerplexity(model, ids, opt);
    const double flops = WindowFlops(model.config(), ctx) * static_cast<double>(r.n_windows);
    const double achieved = flops / r.seconds / 1e9;
    const double peak_after = SgemmPeakGflops(2048, 3);
    std::printf("threads                          %d\n", awq::ThreadPool::Global().size());
    std::printf("sgemm 2048^3 peak (before/after) %.1f / %.1f GFLOP/s\n", peak, peak_after);
    std::printf("eval: %lld tokens, ctx %lld      %.1f tok/s (perplexity %.4f)\n",
                static_cast<long long>(r.n_tokens), static_cast<long long>(ctx),
                r.tokens_per_second, r.perplexity);
    std::printf("forward matrix throughput        %.1f GFLOP/s = %.0f%% of sgemm peak\n", achieved,
                100.0 * achieved / std::max(peak, peak_after));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
