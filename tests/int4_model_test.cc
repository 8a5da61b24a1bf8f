// The model on the int4 kernels against the same model on dequantized fp32 weights: perplexity
// to 4 significant digits and close logits, in memory and when loading a 4-bit AWQ folder.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "awq/eval.h"
#include "awq/gguf.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/tokenizer.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace awq {
namespace {

// Both paths compute (q - z) * s exactly in fp32 and differ only in summation order, so the
// perplexity agrees far below the 4 significant digits (5e-5 relative).
constexpr double kPplRelTol = 5e-5;
// Logits: sums of ~1500 products per layer in another order over 30 layers; 1e-3 absolute.
constexpr float kLogitTol = 1e-3f;

TEST(Int4Model, KernelsMatchTheDequantizedPath) {
  const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(test::ModelPath()));
  const std::vector<int32_t> ids =
      tok.Encode(ReadFileToString(test::TextPath("prideprejudice")), true, false);
  Model m = Model::Load(test::ModelPath());
  QuantizeOptions o;
  o.method = QuantMethod::kRtn;
  o.config.q_group_size = 64;
  const QuantizeResult r = QuantizeModel(m, tok, o);
  PerplexityOptions po;
  po.ctx = 512;
  po.max_tokens = 1024;
  const PerplexityResult fp = EvaluatePerplexity(m, ids, po);
  const int64_t n = 40, d = m.config().hidden_size, v = m.config().vocab_size;
  std::vector<float> h(static_cast<size_t>(n * d)), ref(static_cast<size_t>(n * v)),
      got(ref.size());
  {
    KvCache c = m.NewCache(n);
    m.Forward(ids.data(), n, c, h.data());
    m.Logits(h.data(), n, ref.data());
  }
  ASSERT_FALSE(m.uses_int4());
  ASSERT_TRUE(m.UseInt4Kernels(r.linears));
  ASSERT_TRUE(m.uses_int4());
  const PerplexityResult q4 = EvaluatePerplexity(m, ids, po);
  std::printf("perplexity fp32-dequantized %.6f (%.1f tok/s), int4 kernels %.6f (%.1f tok/s)\n",
              fp.perplexity, fp.tokens_per_second, q4.perplexity, q4.tokens_per_second);
  EXPECT_NEAR(q4.perplexity, fp.perplexity, fp.perplexity * kPplRelTol);
  {
    // Prefill (m > 1) and decode (m == 1) both go through the kernels.
    KvCache c = m.NewCache(n);
    m.Forward(ids.data(), n - 1, c, h.data());
    m.Forward(ids.data() + n - 1, 1, c, h.data() + (n - 1) * d);
    m.Logits(h.data(), n, got.data());
  }
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], ref[i], kLogitTol) << i;

  // A saved 4-bit folder loads onto the kernels; AWQ_INT4=0 keeps the fp32 path.
  const std::string dir = test::MakeTempDir("int4-model") + "/rtn";
  SaveQuantizedModel(m, r, o.config, &tok, dir, 5000000000ull, false);
  EXPECT_TRUE(Model::Load(dir).uses_int4());
  setenv("AWQ_INT4", "0", 1);
  EXPECT_FALSE(Model::Load(dir).uses_int4());
  unsetenv("AWQ_INT4");
}

TEST(Int4Model, RefusesIncompleteOrNon4BitLinears) {
  const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(test::ModelPath()));
  Model m = Model::Load(test::ModelPath());
  QuantizeOptions o;
  o.method = QuantMethod::kRtn;
  o.config.q_group_size = 64;
  o.config.w_bit = 3;
  o.config.version = "awqcpp_packed";
  const QuantizeResult r = QuantizeModel(m, tok, o);
  EXPECT_FALSE(m.UseInt4Kernels(r.linears));
  EXPECT_FALSE(m.UseInt4Kernels({}));
  EXPECT_FALSE(m.uses_int4());
}

}  // namespace
}  // namespace awq
