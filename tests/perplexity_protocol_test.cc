// Perplexity windowing: the llama.cpp protocol (--protocol llama.cpp) against a line-by-line
// transliteration of llama-perplexity's loop (tools/perplexity/perplexity.cpp, perplexity(), of
// the llama.cpp that llama-cpp-python 0.3.16 vendors), on toy logits whose every value depends on
// the whole prefix fed, so a wrong token, position or BOS shows up in the sum; and the model path
// on a small random-weight model. The awq protocol's windows are pinned too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "awq/eval.h"
#include "awq/model.h"
#include "awq/model_config.h"
#include "test_util.h"

namespace awq {
namespace {

constexpr int64_t kVocab = 11;

// Logit of `token` at position p of a run: a hash of the tokens fed at positions 0..p, the
// position and the token, mapped to [-4, 4).
float ToyLogit(const std::vector<int32_t>& fed, int64_t p, int32_t token) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t i = 0; i <= p; ++i) {
    h = (h ^ static_cast<uint64_t>(fed[static_cast<size_t>(i)] + 1)) * 1099511628211ull;
  }
  h = (h ^ static_cast<uint64_t>(p * 131 + token)) * 1099511628211ull;
  h ^= h >> 29;
  return static_cast<float>(h % 8192) / 1024.0f - 4.0f;
}

// Records what was fed and which rows were read.
class ToySource final : public LogitSource {
 public:
  int64_t vocab_size() const override { return kVocab; }
  void Run(const int32_t* tokens, int64_t n) override {
    fed_.assign(tokens, tokens + n);
    runs.push_back(fed_);
    rows.emplace_back();
  }
  void Logits(int64_t row0, int64_t n, float* out) override {
    for (int64_t r = row0; r < row0 + n; ++r) {
      rows.back().push_back(r);
      for (int32_t t = 0; t < kVocab; ++t) *out++ = ToyLogit(fed_, r, t);
    }
  }
  std::vector<std::vector<int32_t>> runs;
  std::vector<std::vector<int64_t>> rows;

 private:
  std::vector<int32_t> fed_;
};

struct Reference {
  double nll = 0.0;
  int count = 0;
  int n_chunk = 0;
};

// llama-perplexity's perplexity() with n_seq = 1 and one batch per chunk (n_batch >= n_ctx), the
// decode replaced by ToyLogit; n_chunks is its --chunks (-1: all). `tokens` already holds BOS at
// 0 when the vocabulary adds it (common_tokenize(..., add_special = true)).
Reference LlamaPerplexity(std::vector<int32_t> tokens, int n_ctx, bool add_bos, int32_t bos,
                          int n_chunks) {
  Reference ref;
  if (static_cast<int>(tokens.size()) < 2 * n_ctx) return ref;  // "you need at least ..."
  const int n_chunk_max = static_cast<int>(tokens.size()) / n_ctx;
  const int n_chunk = n_chunks < 0 ? n_chunk_max : std::min(n_chunks, n_chunk_max);
  const int first = n_ctx / 2;
  for (int i = 0; i < n_chunk; ++i) {
    const int start = i * n_ctx;
    const auto token_org = tokens[static_cast<size_t>(start)];
    if (add_bos) tokens[static_cast<size_t>(start)] = bos;
    const std::vector<int32_t> batch(tokens.begin() + start, tokens.begin() + start + n_ctx);
    tokens[static_cast<size_t>(start)] = token_org;
    const int32_t* tokens_data = tokens.data() + start + first;
    const int n_token = n_ctx - 1 - first;
    for (int k = 0; k < n_token; ++k) {
      // log_softmax(n_vocab, logits + k * n_vocab, tokens_data[k + 1]) at position first + k
      std::vector<float> logits(kVocab);
      for (int32_t t = 0; t < kVocab; ++t)
        logits[static_cast<size_t>(t)] = ToyLogit(batch, first + k, t);
      float max_logit = logits[0];
      for (int t = 1; t < kVocab; ++t)
        max_logit = std::max(max_logit, logits[static_cast<size_t>(t)]);
      double sum_exp = 0.0;
      for (int t = 0; t < kVocab; ++t) sum_exp += expf(logits[static_cast<size_t>(t)] - max_logit);
      const int tok = tokens_data[k + 1];
      ref.nll += -(logits[static_cast<size_t>(tok)] - max_logit - std::log(sum_exp));
    }
    ref.count += n_ctx - first - 1;
  }
  ref.n_chunk = n_chunk;
  return ref;
}

std::vector<int32_t> ToyTokens(size_t n, uint64_t seed, int32_t bos) {
  std::vector<int32_t> t(n);
  uint64_t s = seed;
  for (auto& x : t) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<int32_t>((s >> 33) % kVocab);
  }
  if (bos >= 0) t[0] = bos;
  return t;
}

PerplexityOptions LlamaOptions(int64_t ctx, int32_t bos, int64_t max_tokens = -1) {
  PerplexityOptions o;
  o.ctx = ctx;
  o.protocol = PerplexityProtocol::kLlamaCpp;
  o.bos_id = bos;
  o.max_tokens = max_tokens;
  return o;
}

TEST(PerplexityProtocol, LlamaCppMatchesLlamaPerplexityLoop) {
  // Even and odd contexts, with and without BOS, text lengths on and off a chunk boundary.
  for (int ctx : {8, 9, 16}) {
    for (int32_t bos : {-1, 3}) {
      for (size_t n : {static_cast<size_t>(2 * ctx), static_cast<size_t>(5 * ctx + 3)}) {
        SCOPED_TRACE("ctx " + std::to_string(ctx) + " bos " + std::to_string(bos) + " n " +
                     std::to_string(n));
        const std::vector<int32_t> tokens = ToyTokens(n, 7 + n, bos);
        const Reference ref = LlamaPerplexity(tokens, ctx, bos >= 0, bos, -1);
        ToySource src;
        const PerplexityResult r = EvaluatePerplexity(src, tokens, LlamaOptions(ctx, bos));
        EXPECT_EQ(r.n_windows, ref.n_chunk);
        EXPECT_EQ(r.n_predicted, ref.count);
        EXPECT_EQ(r.n_tokens, static_cast<int64_t>(ref.n_chunk) * ctx);
        EXPECT_NEAR(r.nll_sum, ref.nll, 1e-9 * ref.nll);
        EXPECT_NEAR(r.perplexity, std::exp(ref.nll / ref.count), 1e-9 * r.perplexity);

        // Exactly the chunk's tokens were fed, BOS over the first one when the vocabulary adds
        // it, and only the second half's logits (positions ctx/2 .. ctx-2) were read.
        ASSERT_EQ(src.runs.size(), static_cast<size_t>(ref.n_chunk));
        for (size_t c = 0; c < src.runs.size(); ++c) {
          std::vector<int32_t> want(tokens.begin() + static_cast<int64_t>(c) * ctx,
                                    tokens.begin() + static_cast<int64_t>(c + 1) * ctx);
          if (bos >= 0) want[0] = bos;
          EXPECT_EQ(src.runs[c], want) << "chunk " << c;
          std::vector<int64_t> rows;
          for (int64_t p = ctx / 2; p < ctx - 1; ++p) rows.push_back(p);
          EXPECT_EQ(src.rows[c], rows) << "chunk " << c;
        }
      }
    }
  }
}

TEST(PerplexityProtocol, LlamaCppChunkLimitAndMinimumLength) {
  const std::vector<int32_t> tokens = ToyTokens(100, 1, 3);
  // --max-tokens N is --chunks N / ctx: 35 / 8 = 4 chunks of the 12 there are.
  const Reference ref = LlamaPerplexity(tokens, 8, true, 3, 4);
  ToySource src;
  const PerplexityResult r = EvaluatePerplexity(src, tokens, LlamaOptions(8, 3, 35));
  EXPECT_EQ(r.n_windows, 4);
  EXPECT_EQ(r.n_predicted, ref.count);
  EXPECT_EQ(ref.count, 4 * 3);
  EXPECT_NEAR(r.nll_sum, ref.nll, 1e-9 * ref.nll);

  // llama-perplexity wants 2 x ctx tokens in the whole text, whatever --chunks says.
  test::ExpectError([&] { PlanPerplexityWindows(31, LlamaOptions(16, -1)); },
                    {"2 x ctx", "32", "31"});
  EXPECT_EQ(PlanPerplexityWindows(32, LlamaOptions(16, -1)).size(), 2u);
  EXPECT_EQ(PlanPerplexityWindows(100, LlamaOptions(16, -1, 16)).size(), 1u);
  test::ExpectError([&] { PlanPerplexityWindows(100, LlamaOptions(16, -1, 15)); },
                    {"--max-tokens 15", "16"});
  test::ExpectError([&] { PlanPerplexityWindows(100, LlamaOptions(2, -1)); }, {"at least 3"});
}

TEST(PerplexityProtocol, AwqWindowsScoreEveryPositionWithoutBos) {
  PerplexityOptions o;
  o.ctx = 8;
  o.max_tokens = 30;
  o.bos_id = 3;  // ignored by the awq protocol
  const std::vector<PerplexityWindow> w = PlanPerplexityWindows(100, o);
  ASSERT_EQ(w.size(), 3u);
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(w[i].start, static_cast<int64_t>(i) * 8);
    EXPECT_EQ(w[i].length, 8);
    EXPECT_EQ(w[i].score_from, 0);
    EXPECT_EQ(w[i].first_token, -1);
  }
  const std::vector<int32_t> tokens = ToyTokens(30, 5, -1);
  ToySource src;
  const PerplexityResult r = EvaluatePerplexity(src, tokens, o);
  EXPECT_EQ(r.n_predicted, 3 * 7);
  EXPECT_EQ(src.runs[1], std::vector<int32_t>(tokens.begin() + 8, tokens.begin() + 16));
  test::ExpectError([&] { PlanPerplexityWindows(7, o); }, {"at least one window of 8", "7"});
  EXPECT_EQ(ParsePerplexityProtocol("llama.cpp"), PerplexityProtocol::kLlamaCpp);
  EXPECT_STREQ(PerplexityProtocolName(PerplexityProtocol::kAwq), "awq");
  test::ExpectError([] { ParsePerplexityProtocol("wikitext"); }, {"wikitext", "llama.cpp"});
}

// The Model overload runs the same windows: each chunk from a fresh cache, BOS written over its
// first token, the second half scored, against Forward + Logits called by hand.
TEST(PerplexityProtocol, LlamaCppOnARandomModel) {
  ModelConfig c = Llama2_7bConfig(2);
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 64;
  SyntheticOptions so;
  so.int4 = false;
  so.f16_head = false;
  so.seed = 11;
  const Model m = Model::Synthetic(c, so);
  std::vector<int32_t> tokens(70);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 37 + 5) % 97);
  const int64_t ctx = 24;
  const int32_t bos = 1;
  const PerplexityResult r = EvaluatePerplexity(m, tokens, LlamaOptions(ctx, bos));
  ASSERT_EQ(r.n_windows, 2);  // 70 / 24
  EXPECT_EQ(r.n_predicted, 2 * (ctx - ctx / 2 - 1));

  double nll = 0.0;
  for (int64_t chunk = 0; chunk < 2; ++chunk) {
    std::vector<int32_t> win(tokens.begin() + chunk * ctx, tokens.begin() + (chunk + 1) * ctx);
    win[0] = bos;
    KvCache cache = m.NewCache(ctx);
    std::vector<float> hidden(static_cast<size_t>(ctx * c.hidden_size));
    m.Forward(win.data(), ctx, cache, hidden.data());
    std::vector<float> logits(static_cast<size_t>(ctx * c.vocab_size));
    m.Logits(hidden.data(), ctx, logits.data());
    for (int64_t p = ctx / 2; p < ctx - 1; ++p) {
      const float* row = logits.data() + p * c.vocab_size;
      double sum = 0.0;
      float mx = row[0];
      for (int64_t t = 1; t < c.vocab_size; ++t) mx = std::max(mx, row[t]);
      for (int64_t t = 0; t < c.vocab_size; ++t) sum += std::exp(double(row[t]) - mx);
      nll += mx + std::log(sum) - row[win[static_cast<size_t>(p + 1)]];
    }
  }
  EXPECT_NEAR(r.nll_sum, nll, 1e-6 * nll);
  // Without BOS the first token stays, and the result changes.
  const PerplexityResult no_bos = EvaluatePerplexity(m, tokens, LlamaOptions(ctx, -1));
  EXPECT_NE(no_bos.nll_sum, r.nll_sum);
}

}  // namespace
}  // namespace awq
