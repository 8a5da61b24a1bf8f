// The model on the int4 kernels against the same model on dequantized fp32 weights: perplexity
// to 4 significant digits and close logits, in memory and when loading a 4-bit AWQ folder.
#include <gtest/gtest.h>
#include <algorithm>

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
// int8 activations (blocks of 16, symmetric) moved perplexity by +0.05% over 4096 tokens. Over
// a single 512-token window the figure is noise-dominated: nudging every product by one ulp
// moved it between -0.05% and +0.38% (an activation near half a step rounds the other way), so
// the check averages over eight windows.
constexpr double kInt8PplRelTol = 3e-3;
// Logits (magnitude ~10): sums of ~1500 products per layer in another order (the packed GEMM's
// and the GEMV's against oneDNN's sgemm) over 30 layers; measured up to 2.3e-3 absolute.
constexpr float kLogitTol = 5e-3f;

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
  // Prefill of n - 1 tokens, then one decode step (which reads the fp16 KV cache).
  auto prefill_then_decode = [&](std::vector<float>& logits) {
    KvCache c = m.NewCache(n);
    m.Forward(ids.data(), n - 1, c, h.data());
    m.Forward(ids.data() + n - 1, 1, c, h.data() + (n - 1) * d);
    m.Logits(h.data(), n, logits.data());
  };
  prefill_then_decode(ref);
  ASSERT_FALSE(m.uses_int4());
  ASSERT_TRUE(m.UseInt4Kernels(r.linears));
  ASSERT_TRUE(m.uses_int4());
  // fp32 activations on every path: the same products as the dequantized model.
  m.set_int4_kernel(Int4KernelAvailable(Int4Kernel::kAvx2) ? Int4Kernel::kAvx2
                                                           : Int4Kernel::kReference);
  const PerplexityResult q4 = EvaluatePerplexity(m, ids, po);
  std::printf("perplexity fp32-dequantized %.6f (%.1f tok/s), int4 kernels %.6f (%.1f tok/s)\n",
              fp.perplexity, fp.tokens_per_second, q4.perplexity, q4.tokens_per_second);
  EXPECT_NEAR(q4.perplexity, fp.perplexity, fp.perplexity * kPplRelTol);
  // Prefill (m > 1) and decode (m == 1) both go through the kernels.
  prefill_then_decode(got);
  float max_diff = 0;
  for (size_t i = 0; i < got.size(); ++i) max_diff = std::max(max_diff, std::fabs(got[i] - ref[i]));
  std::printf("logits, prefill + decode through the kernels: max |diff| %.2e\n", max_diff);
  EXPECT_LE(max_diff, kLogitTol);

  // int8 activations everywhere (what awq generate runs: the decode GEMV and the prompt GEMM): a
  // small, bounded perplexity cost.
  m.set_int4_kernel(Int4KernelAvailable(Int4Kernel::kAvx2Int8) ? Int4Kernel::kAvx2Int8
                                                               : Int4Kernel::kReferenceInt8);
  PerplexityOptions po8 = po;
  po8.max_tokens = 4096;
  po8.ctx = 512;
  const double ppl8 = EvaluatePerplexity(m, ids, po8).perplexity;
  m.set_int4_kernel(Int4Kernel::kAvx2);
  const double ppl32 = EvaluatePerplexity(m, ids, po8).perplexity;
  std::printf("int8 activations: perplexity %.6f vs %.6f with fp32 activations (%+.3f%%)\n", ppl8,
              ppl32, 100 * (ppl8 / ppl32 - 1));
  EXPECT_NEAR(ppl8, ppl32, ppl32 * kInt8PplRelTol);
  m.set_int4_kernel(Int4Kernel::kAuto);

  // A saved 4-bit folder loads onto the kernels with no fp32 copies of its linears and its fp16
  // LM head kept fp16; LoadOptions{false} and AWQ_INT4=0 keep the dequantized fp32 path, and
  // both agree on perplexity.
  const std::string dir = test::MakeTempDir("int4-model") + "/rtn";
  SaveQuantizedModel(m, r, o.config, &tok, dir, 5000000000ull, false);
  const Model loaded = Model::Load(dir);
  EXPECT_TRUE(loaded.uses_int4());
  EXPECT_FALSE(loaded.has_dense_linears());
  EXPECT_EQ(loaded.weights().lm_head.dtype(), DType::kF16);
  EXPECT_EQ(loaded.ParameterCount(), m.ParameterCount());
  const Model dense = Model::Load(dir, LoadOptions{.int4 = false});
  EXPECT_FALSE(dense.uses_int4());
  EXPECT_TRUE(dense.has_dense_linears());
  // 4-bit linears with g64 fp16 scales and zeros, and an fp16 head: under 30% of the fp32 bytes.
  std::printf("decode weight bytes: int4 %lld, fp32 %lld\n",
              static_cast<long long>(loaded.DecodeWeightBytes()),
              static_cast<long long>(dense.DecodeWeightBytes()));
  EXPECT_LT(loaded.DecodeWeightBytes(), dense.DecodeWeightBytes() * 3 / 10);
  const double ppl_loaded = EvaluatePerplexity(loaded, ids, po).perplexity;
  const double ppl_dense = EvaluatePerplexity(dense, ids, po).perplexity;
  EXPECT_NEAR(ppl_loaded, ppl_dense, ppl_dense * kPplRelTol);
  // AutoAWQ's GEMV layout holds the same codes: it loads onto the same kernels, same result.
  QuantConfig gemv = o.config;
  gemv.version = kLayoutGemv;
  const std::string dir_gemv = test::MakeTempDir("int4-model") + "/rtn-gemv";
  SaveQuantizedModel(m, r, gemv, &tok, dir_gemv, 5000000000ull, false);
  const Model loaded_gemv = Model::Load(dir_gemv);
  EXPECT_TRUE(loaded_gemv.uses_int4());
  EXPECT_DOUBLE_EQ(EvaluatePerplexity(loaded_gemv, ids, po).perplexity, ppl_loaded);

  // The optional int8 LM head: fewer bytes per token, perplexity within 0.5%.
  const Model head8 = Model::Load(dir, LoadOptions{.int8_lm_head = true});
  ASSERT_NE(head8.weights().lm_head8, nullptr);
  EXPECT_LT(head8.DecodeWeightBytes(), loaded.DecodeWeightBytes() * 8 / 10);
  const double ppl_head8 = EvaluatePerplexity(head8, ids, po).perplexity;
  std::printf("int8 LM head: perplexity %.6f vs %.6f (%+.3f%%)\n", ppl_head8, ppl_loaded,
              100 * (ppl_head8 / ppl_loaded - 1));
  EXPECT_NEAR(ppl_head8, ppl_loaded, ppl_loaded * 5e-3);
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
