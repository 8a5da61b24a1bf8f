// llama-quantize's per-tensor types (GgufTensorType), case by case for the shapes of the models
// awq.cpp is measured on, and the streaming GGUF writer.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "awq/error.h"
#include "awq/gguf.h"
#include "awq/gguf_recipe.h"
#include "test_util.h"

namespace awq {
namespace {

using T = GgmlType;

std::string Blk(int l, const char* t) { return "blk." + std::to_string(l) + "." + t + ".weight"; }

TEST(GgufRecipe, ParsesNamesAndRefusesUnknownOnes) {
  EXPECT_EQ(ParseGgufFileType("q4_k_m"), GgufFileType::kQ4_K_M);
  EXPECT_EQ(ParseGgufFileType("Q3_K_M"), GgufFileType::kQ3_K_M);
  EXPECT_EQ(GgufFileTypeName(GgufFileType::kQ4_0), "Q4_0");
  try {
    ParseGgufFileType("Q4_K_X");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Q4_K_X"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("Q4_K_M"), std::string::npos);
  }
}

TEST(GgufRecipe, QuantizesWeightMatricesOnly) {
  EXPECT_TRUE(GgufQuantizesTensor("blk.0.attn_q.weight", 2));
  EXPECT_TRUE(GgufQuantizesTensor("token_embd.weight", 2));
  EXPECT_FALSE(GgufQuantizesTensor("blk.0.attn_norm.weight", 1));
  EXPECT_FALSE(GgufQuantizesTensor("blk.0.attn_q_norm.weight", 2));
  EXPECT_FALSE(GgufQuantizesTensor("blk.0.attn_q.bias", 1));
}

// Llama-2-7B: 32 layers, 4096 wide (whole k-quant super-blocks), no grouped-query attention.
TEST(GgufRecipe, Llama7BShapes) {
  const GgufRecipeModel m{32, 32, 32, true};
  const auto ty = [&](GgufFileType ft, const std::string& n, int64_t cols = 4096) {
    return GgufTensorType(ft, n, cols, m);
  };
  // Q4_K_M: attn_v and ffn_down in the first and last eighth and every third layer between get
  // Q6_K; the head Q6_K.
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, Blk(0, "attn_q")), T::kQ4_K);
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, Blk(0, "attn_v")), T::kQ6_K);
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, Blk(5, "attn_v")), T::kQ4_K);
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, Blk(6, "attn_v")), T::kQ6_K);
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, Blk(6, "ffn_down"), 11008), T::kQ6_K);
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, Blk(7, "ffn_down"), 11008), T::kQ4_K);
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, Blk(28, "ffn_down"), 11008), T::kQ6_K);
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, "output.weight"), T::kQ6_K);
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, "token_embd.weight"), T::kQ4_K);
  // Q3_K_M: attn_v Q5_K in the first two layers then Q4_K, ffn_down Q5_K in the first 16th then
  // Q4_K, attn_output Q4_K, the rest Q3_K.
  EXPECT_EQ(ty(GgufFileType::kQ3_K_M, Blk(1, "attn_v")), T::kQ5_K);
  EXPECT_EQ(ty(GgufFileType::kQ3_K_M, Blk(2, "attn_v")), T::kQ4_K);
  EXPECT_EQ(ty(GgufFileType::kQ3_K_M, Blk(1, "ffn_down"), 11008), T::kQ5_K);
  EXPECT_EQ(ty(GgufFileType::kQ3_K_M, Blk(2, "ffn_down"), 11008), T::kQ4_K);
  EXPECT_EQ(ty(GgufFileType::kQ3_K_M, Blk(9, "attn_output")), T::kQ4_K);
  EXPECT_EQ(ty(GgufFileType::kQ3_K_M, Blk(9, "ffn_up")), T::kQ3_K);
  // Q4_0: everything Q4_0 but the head.
  EXPECT_EQ(ty(GgufFileType::kQ4_0, Blk(0, "attn_v")), T::kQ4_0);
  EXPECT_EQ(ty(GgufFileType::kQ4_0, "output.weight"), T::kQ6_K);
}

// SmolLM2-135M: 30 layers, 576 wide (not whole 256-value super-blocks), tied embeddings.
// llama.cpp's rules for 8-expert models (Mixtral-8x7B): attn_v and attn_k at Q8_0 in every
// type, attn_output at Q5_K in the k-quant mixes; ffn_down_exps follows ffn_down's rule.
TEST(GgufRecipe, EightExpertModelsGetMoreBitsOnAttention) {
  GgufRecipeModel m{32, 32, 8, true};
  m.n_expert = 8;
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_0, "blk.5.attn_v.weight", 4096, m), GgmlType::kQ8_0);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "blk.5.attn_k.weight", 4096, m), GgmlType::kQ8_0);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "blk.5.attn_output.weight", 4096, m),
            GgmlType::kQ5_K);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_0, "blk.5.attn_output.weight", 4096, m),
            GgmlType::kQ4_0);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "blk.0.ffn_down_exps.weight", 14336, m),
            GgmlType::kQ6_K);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "blk.5.ffn_down_exps.weight", 14336, m),
            GgmlType::kQ4_K);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "blk.5.ffn_gate_exps.weight", 4096, m),
            GgmlType::kQ4_K);
  m.n_expert = 4;  // only the 8-expert case is special
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_0, "blk.5.attn_v.weight", 4096, m), GgmlType::kQ4_0);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "blk.5.attn_k.weight", 4096, m), GgmlType::kQ4_K);
}

TEST(GgufRecipe, SmolLM2ShapesFallBack) {
  const GgufRecipeModel m{30, 9, 3, false};
  const auto ty = [&](GgufFileType ft, const std::string& n, int64_t cols = 576) {
    return GgufTensorType(ft, n, cols, m);
  };
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, Blk(3, "attn_q")), T::kQ5_0);  // Q4_K falls back
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, Blk(0, "attn_v")), T::kQ8_0);  // Q6_K falls back
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, Blk(0, "ffn_down"), 1536), T::kQ6_K);
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, Blk(4, "ffn_down"), 1536), T::kQ4_K);
  EXPECT_EQ(ty(GgufFileType::kQ4_K_M, "token_embd.weight"), T::kQ8_0);  // the tied head
  EXPECT_EQ(ty(GgufFileType::kQ3_K_M, Blk(5, "ffn_gate")), T::kIQ4_NL);
  EXPECT_EQ(ty(GgufFileType::kQ3_K_M, Blk(5, "attn_output")), T::kQ5_0);
  EXPECT_EQ(ty(GgufFileType::kQ3_K_M, Blk(5, "ffn_down"), 1536), T::kQ4_K);
  EXPECT_EQ(ty(GgufFileType::kQ4_0, Blk(5, "ffn_gate")), T::kQ4_0);
  EXPECT_EQ(ty(GgufFileType::kQ4_0, "token_embd.weight"), T::kQ8_0);
  // A legacy type with no fallback: rows that are not whole blocks are an error naming the
  // tensor.
  EXPECT_THROW(ty(GgufFileType::kQ4_0, Blk(0, "attn_q"), 100), Error);
}

TEST(GgufStreamWriter, WritesWhatTheReaderReadsAndNothingOnError) {
  const std::string dir = test::MakeTempDir("gguf-stream");
  std::vector<std::pair<std::string, GgufValue>> kv = {
      {"general.architecture", GgufString("llama")}};
  const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {7, 8};
  std::vector<GgufTensorDecl> decl = {{"a", T::kF32, {3, 2}, 24}, {"b", T::kF32, {2}, 8}};
  {
    GgufStreamWriter w(dir + "/m.gguf", kv, decl);
    w.Write("a", a.data(), 24);
    w.Write("b", b.data(), 8);
    w.Finish();
  }
  const GgufFile f = GgufFile::Open(dir + "/m.gguf");
  EXPECT_EQ(f.GetString("general.architecture"), "llama");
  const Tensor ta = f.ReadF32("a");
  EXPECT_EQ(ta.data<float>()[5], 6.0f);
  EXPECT_EQ(f.ReadF32("b").data<float>()[1], 8.0f);
  // Out of order, or abandoned: an error, and no file under the final name.
  {
    GgufStreamWriter w(dir + "/bad.gguf", kv, decl);
    EXPECT_THROW(w.Write("b", b.data(), 8), Error);
    EXPECT_THROW(w.Finish(), Error);
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/bad.gguf"));
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  }
  // A declared size that the type and shape do not give.
  decl[0].bytes = 20;
  EXPECT_THROW(GgufStreamWriter(dir + "/c.gguf", kv, decl), Error);
}

}  // namespace
}  // namespace awq
