// The fp32 engine against the reference: logits, greedy generations, token ids and perplexities
// of SmolLM2-135M-Instruct computed by transformers (tools/make_model_golden.py, fixture format in
// docs/GOLDEN.md). Set AWQ_LONG_TESTS=1 for the 32768-token perplexity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "awq/eval.h"
#include "awq/gguf.h"
#include "awq/model.h"
#include "awq/tokenizer.h"
#include "core/byte_reader.h"
#include "core/mapped_file.h"
#include "kernels/cpu/ops.h"
#include "test_util.h"

namespace awq {
namespace {

// The reference is fp32 too, with another summation order; its own fp32-vs-fp64 noise is
// ~1e-4 (docs/GOLDEN.md). Logits differ by a few 1e-4, so 2e-3 absolute is a bound with margin
// that still catches any real error (a wrong rope, norm or permutation moves logits by >0.1).
constexpr float kLogitTol = 2e-3f;
// Decode reads keys and values back from the fp16 cache (relative rounding 2^-11); measured on
// the golden prompts the largest logit moves by 0.037 (llama.cpp keeps an fp16 cache as well).
constexpr float kDecodeLogitTol = 0.08f;
// Perplexity: "agree to 4 significant digits" -> relative error well under 5e-5 is required of
// the sum of thousands of NLLs; per-token noise averages out, so 2e-5 is met with margin.
constexpr double kPplRelTol = 2e-5;

struct PromptFacts {
  std::string name, text;
  std::vector<int32_t> ids, argmax, fixed_ids;
  std::vector<float> lse, max_logit, min_logit, top_logits, fixed_logits;
  std::vector<int32_t> top_ids;
  uint32_t k = 0, f = 0;
};
struct Generation {
  std::string name;
  std::vector<int32_t> prompt, generated;
};
struct Ppl {
  uint32_t n = 0, ctx = 0;
  double ppl = 0, nll = 0;
  std::vector<double> window_nll;
};
struct Golden {
  std::map<std::string, std::string> meta;
  std::vector<PromptFacts> prompts;
  std::vector<Generation> gens;
  uint64_t text_tokens = 0;
  uint64_t hash32k = 0;
  std::vector<int32_t> ids32k;
  std::map<std::string, Ppl> ppl;
};

template <class T>
std::vector<T> ReadArray(ByteReader& r, uint64_t n, const char* field) {
  std::vector<T> v(n);
  const auto bytes = r.ReadBytes(n * sizeof(T), field);
  // An empty array: memcpy's pointers must not be null even for 0 bytes (UBSan).
  if (!bytes.empty()) std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}
std::string ReadStr(ByteReader& r) {
  const uint32_t n = r.Read<uint32_t>("str length");
  return std::string(r.ReadBytes(n, "str"));
}

const Golden& LoadGolden() {
  static Golden* g = [] {
    auto* out = new Golden();
    const std::string bytes = ReadFileToString(test::DataPath("smollm2_golden.bin"));
    ByteReader r(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                 "smollm2_golden.bin");
    EXPECT_EQ(std::string(r.ReadBytes(8, "magic")), "AWQGOLD1");
    EXPECT_EQ(r.Read<uint32_t>("version"), 1u);
    const uint32_t n_sections = r.Read<uint32_t>("sections");
    for (uint32_t s = 0; s < n_sections; ++s) {
      const std::string tag(r.ReadBytes(4, "tag"));
      r.Read<uint32_t>("reserved");
      const uint64_t size = r.Read<uint64_t>("payload size");
      const size_t end = r.pos() + size;
      if (tag == "META") {
        const uint32_t n = r.Read<uint32_t>("n");
        for (uint32_t i = 0; i < n; ++i) {
          std::string k = ReadStr(r);
          out->meta[k] = ReadStr(r);
        }
      } else if (tag == "PRMT") {
        PromptFacts p;
        p.name = ReadStr(r);
        p.text = ReadStr(r);
        const uint32_t t = r.Read<uint32_t>("T");
        p.ids = ReadArray<int32_t>(r, t, "ids");
        p.k = r.Read<uint32_t>("K");
        p.f = r.Read<uint32_t>("F");
        p.fixed_ids = ReadArray<int32_t>(r, p.f, "fixed");
        p.argmax = ReadArray<int32_t>(r, t, "argmax");
        p.lse = ReadArray<float>(r, t, "lse");
        p.max_logit = ReadArray<float>(r, t, "max");
        p.min_logit = ReadArray<float>(r, t, "min");
        p.top_ids = ReadArray<int32_t>(r, uint64_t{t} * p.k, "top ids");
        p.top_logits = ReadArray<float>(r, uint64_t{t} * p.k, "top logits");
        p.fixed_logits = ReadArray<float>(r, uint64_t{t} * p.f, "fixed logits");
        out->prompts.push_back(std::move(p));
      } else if (tag == "GENR") {
        Generation g;
        g.name = ReadStr(r);
        ReadStr(r);
        g.prompt = ReadArray<int32_t>(r, r.Read<uint32_t>("P"), "prompt");
        const uint32_t n = r.Read<uint32_t>("G");
        g.generated = ReadArray<int32_t>(r, n, "generated");
        ReadArray<float>(r, n, "margins");
        out->gens.push_back(std::move(g));
      } else if (tag == "TOKS") {
        ReadStr(r);
        ReadStr(r);
        r.Read<uint64_t>("file size");
        out->text_tokens = r.Read<uint64_t>("n tokens");
        const uint32_t h = r.Read<uint32_t>("H");
        out->hash32k = r.Read<uint64_t>("hash");
        ReadArray<int32_t>(r, r.Read<uint32_t>("F"), "first ids");
        out->ids32k = ReadArray<int32_t>(r, h, "ids");
      } else if (tag == "PPLX") {
        const std::string label = ReadStr(r);
        ReadStr(r);
        Ppl p;
        p.n = r.Read<uint32_t>("N");
        p.ctx = r.Read<uint32_t>("ctx");
        const uint32_t w = r.Read<uint32_t>("W");
        p.ppl = r.Read<double>("ppl");
        p.nll = r.Read<double>("nll");
        r.Read<uint64_t>("n_predicted");
        p.window_nll = ReadArray<double>(r, w, "window nll");
        ReadArray<float>(r, r.Read<uint32_t>("M"), "token nll");
        out->ppl[label] = std::move(p);
      }
      r.Seek(end, "section end");
    }
    return out;
  }();
  return *g;
}

const Model& SharedModel() {
  static Model* m = new Model(Model::Load(test::ModelPath()));
  return *m;
}

TEST(ModelGolden, LogitsMatchTransformersOnEveryPosition) {
  const Golden& g = LoadGolden();
  const Model& model = SharedModel();
  const int64_t d = model.config().hidden_size, v = model.config().vocab_size;
  ASSERT_EQ(g.prompts.size(), 6u);
  for (const PromptFacts& p : g.prompts) {
    const int64_t t = static_cast<int64_t>(p.ids.size());
    KvCache cache = model.NewCache(t);
    std::vector<float> hidden(static_cast<size_t>(t * d)), logits(static_cast<size_t>(t * v));
    model.Forward(p.ids.data(), t, cache, hidden.data());
    model.Logits(hidden.data(), t, logits.data());
    for (int64_t i = 0; i < t; ++i) {
      const float* row = logits.data() + i * v;
      SCOPED_TRACE(p.name + " position " + std::to_string(i));
      EXPECT_NEAR(LogSumExpRow(row, v), p.lse[static_cast<size_t>(i)], kLogitTol);
      for (uint32_t j = 0; j < p.f; ++j) {
        ASSERT_NEAR(row[p.fixed_ids[j]], p.fixed_logits[static_cast<size_t>(i) * p.f + j],
                    kLogitTol);
      }
      for (uint32_t j = 0; j < p.k; ++j) {
        const size_t at = static_cast<size_t>(i) * p.k + j;
        ASSERT_NEAR(row[p.top_ids[at]], p.top_logits[at], kLogitTol);
      }
      // Same argmax, except where the reference's top-2 margin is within the tolerance.
      const float margin = p.top_logits[static_cast<size_t>(i) * p.k] -
                           p.top_logits[static_cast<size_t>(i) * p.k + 1];
      if (margin > 2 * kLogitTol) {
        int64_t best = 0;
        for (int64_t j = 1; j < v; ++j) best = row[j] > row[best] ? j : best;
        EXPECT_EQ(best, p.argmax[static_cast<size_t>(i)]);
      }
    }
  }
}

TEST(ModelGolden, TokenByTokenDecodeFromTheFp16CacheMatchesTransformers) {
  // Every position decoded alone, attending to keys and values read back from the fp16 cache:
  // the fp16 rounding of the cache costs at most kDecodeLogitTol on any golden logit.
  const Golden& g = LoadGolden();
  const Model& model = SharedModel();
  const int64_t d = model.config().hidden_size, v = model.config().vocab_size;
  float worst = 0.0f;
  for (const PromptFacts& p : g.prompts) {
    const int64_t t = static_cast<int64_t>(p.ids.size());
    KvCache cache = model.NewCache(t);
    std::vector<float> hidden(static_cast<size_t>(d)), row(static_cast<size_t>(v));
    for (int64_t i = 0; i < t; ++i) {
      model.Forward(p.ids.data() + i, 1, cache, hidden.data());
      model.Logits(hidden.data(), 1, row.data());
      SCOPED_TRACE(p.name + " position " + std::to_string(i));
      for (uint32_t j = 0; j < p.k; ++j) {
        const size_t at = static_cast<size_t>(i) * p.k + j;
        worst = std::max(worst, std::fabs(row[p.top_ids[at]] - p.top_logits[at]));
        ASSERT_NEAR(row[p.top_ids[at]], p.top_logits[at], kDecodeLogitTol);
      }
    }
  }
  std::printf("largest golden logit difference, token-by-token decode: %.5f\n", worst);
}

TEST(ModelGolden, PromptInTwoPartsReadsTheCacheBack) {
  // The second part of a prompt (n > 1 at pos0 > 0) attends to the first part's keys and values
  // widened back from the fp16 cache: within kDecodeLogitTol of the golden logits.
  const Golden& g = LoadGolden();
  const Model& model = SharedModel();
  const int64_t d = model.config().hidden_size, v = model.config().vocab_size;
  for (const PromptFacts& p : g.prompts) {
    const int64_t t = static_cast<int64_t>(p.ids.size()), first = t / 2;
    if (t - first < 2) continue;
    KvCache cache = model.NewCache(t);
    std::vector<float> hidden(static_cast<size_t>(t * d)), logits(static_cast<size_t>(t * v));
    model.Forward(p.ids.data(), first, cache, hidden.data());
    model.Forward(p.ids.data() + first, t - first, cache, hidden.data() + first * d);
    ASSERT_EQ(cache.size(), t);
    model.Logits(hidden.data(), t, logits.data());
    for (int64_t i = 0; i < t; ++i) {
      SCOPED_TRACE(p.name + " position " + std::to_string(i));
      for (uint32_t j = 0; j < p.k; ++j) {
        const size_t at = static_cast<size_t>(i) * p.k + j;
        ASSERT_NEAR(logits[static_cast<size_t>(i * v) + p.top_ids[at]], p.top_logits[at],
                    i < first ? kLogitTol : kDecodeLogitTol);
      }
    }
  }
}

TEST(ModelGolden, GreedyGenerationWithKvCacheMatches) {
  const Golden& g = LoadGolden();
  const Model& model = SharedModel();
  const int64_t d = model.config().hidden_size, v = model.config().vocab_size;
  ASSERT_EQ(g.gens.size(), 2u);
  for (const Generation& gen : g.gens) {
    const int64_t p = static_cast<int64_t>(gen.prompt.size());
    KvCache cache = model.NewCache(p + static_cast<int64_t>(gen.generated.size()));
    std::vector<float> hidden(static_cast<size_t>(p * d)), logits(static_cast<size_t>(v));
    model.Forward(gen.prompt.data(), p, cache, hidden.data());
    model.Logits(hidden.data() + (p - 1) * d, 1, logits.data());
    std::vector<int32_t> out;
    for (size_t s = 0; s < gen.generated.size(); ++s) {
      int32_t best = 0;
      for (int32_t j = 1; j < v; ++j)
        best = logits[static_cast<size_t>(j)] > logits[static_cast<size_t>(best)] ? j : best;
      out.push_back(best);
      model.Forward(&best, 1, cache, hidden.data());
      model.Logits(hidden.data(), 1, logits.data());
    }
    EXPECT_EQ(out, gen.generated) << gen.name;
  }
}

TEST(ModelGolden, TokenizerReproducesThePerplexityTokens) {
  const Golden& g = LoadGolden();
  const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(test::ModelPath()));
  const std::vector<int32_t> ids =
      tok.Encode(ReadFileToString(test::TextPath("prideprejudice")), true, false);
  EXPECT_EQ(ids.size(), g.text_tokens);
  ASSERT_GE(ids.size(), g.ids32k.size());
  const std::vector<int32_t> head(ids.begin(), ids.begin() + static_cast<long>(g.ids32k.size()));
  EXPECT_EQ(test::Fnv1a64(head), g.hash32k);
  EXPECT_EQ(head, g.ids32k);
}

void CheckPerplexity(const std::string& label) {
  const Golden& g = LoadGolden();
  const Ppl& ref = g.ppl.at(label);
  PerplexityOptions opt;
  opt.ctx = ref.ctx;
  opt.max_tokens = ref.n;
  const PerplexityResult r = EvaluatePerplexity(SharedModel(), g.ids32k, opt);
  EXPECT_EQ(r.n_windows, static_cast<int64_t>(ref.window_nll.size()));
  EXPECT_NEAR(r.perplexity, ref.ppl, ref.ppl * kPplRelTol)
      << "label " << label << ": ours " << r.perplexity << ", transformers " << ref.ppl;
  std::printf("perplexity %s (N=%u, ctx=%u): awq.cpp %.6f, transformers %.6f, %.1f tok/s\n",
              label.c_str(), ref.n, ref.ctx, r.perplexity, ref.ppl, r.tokens_per_second);
}

TEST(ModelGolden, Perplexity2048TokensCtx512) { CheckPerplexity("c"); }
TEST(ModelGolden, Perplexity4096TokensCtx2048) { CheckPerplexity("b"); }
TEST(ModelGolden, Perplexity32768TokensCtx2048Long) {
  if (std::getenv("AWQ_LONG_TESTS") == nullptr) GTEST_SKIP() << "set AWQ_LONG_TESTS=1";
  CheckPerplexity("a");
}

TEST(ModelGolden, BlockForwardEqualsModuleForwards) {
  // The module-level forwards used by quantization compose to the cached block forward.
  const Model& model = SharedModel();
  const Golden& g = LoadGolden();
  const ModelConfig& c = model.config();
  const int64_t d = c.hidden_size, n = 40;
  std::vector<float> x(static_cast<size_t>(n * d));
  for (int64_t t = 0; t < n; ++t) {
    std::memcpy(x.data() + t * d,
                model.weights().embed.data<float>() + int64_t{g.ids32k[static_cast<size_t>(t)]} * d,
                static_cast<size_t>(d) * 4);
  }
  std::vector<float> a = x;
  KvCache cache = model.NewCache(n);
  model.BlockForward(0, a.data(), n, 0, cache);
  const LayerWeights& lw = model.weights().layers[0];
  std::vector<float> normed(x.size()), out(x.size());
  model.Norm(x.data(), lw.attn_norm.data<float>(), n, normed.data());
  model.AttentionBatch(0, lw.wqkv.data<float>(), lw.wo.data<float>(), normed.data(), 1, n, nullptr,
                       out.data());
  for (size_t i = 0; i < x.size(); ++i) x[i] += out[i];
  model.Norm(x.data(), lw.ffn_norm.data<float>(), n, normed.data());
  model.MlpBatch(0, lw.w_gate_up.data<float>(), lw.w_down.data<float>(), normed.data(), n, nullptr,
                 out.data());
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_NEAR(x[i] + out[i], a[i], 1e-4f * (1 + std::fabs(a[i])));
}

}  // namespace
}  // namespace awq
