// GGUF output from Hugging Face folders (QuantizeToGguf on a folder): the tiny random models of
// each family (tests/data/tiny, made by transformers; a config key changed where llama.cpp's GGUF
// cannot hold the original) written as F32 GGUF files load back as the same model (the same
// logits) with the same tokenizer (the same ids), and settings llama.cpp's GGUF cannot hold are
// refused before anything is written.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "awq/gguf.h"
#include "awq/gguf_export.h"
#include "awq/half.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/safetensors.h"
#include "awq/tokenizer.h"
#include "test_util.h"

namespace awq {
namespace {

namespace fs = std::filesystem;

using test::TinyDir;

Tokenizer FolderTokenizer(const std::string& dir) {
  return Tokenizer::FromHfJson(dir + "/tokenizer.json", dir + "/tokenizer_config.json");
}

QuantizeOptions Rtn() {
  QuantizeOptions o;
  o.method = QuantMethod::kRtn;
  return o;
}

// A copy of a tiny model with config.json keys replaced (a setting GGUF can hold).
std::string PatchedCopy(const std::string& family, const nlohmann::json& patch) {
  const std::string dir = test::MakeTempDir("gguf-from-hf-" + family) + "/" + family;
  fs::copy(TinyDir(family), dir, fs::copy_options::recursive);
  std::ifstream in(dir + "/config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  in.close();
  config.merge_patch(patch);
  std::ofstream(dir + "/config.json") << config.dump(2);
  return dir;
}

// The tiny model of `family`, made representable where it is not: Llama with plain RoPE,
// Qwen2 without YaRN, Mistral without its 8-token window, Gemma 3 scaling queries by head_dim as
// llama.cpp does.
std::string ModelDir(const std::string& family) {
  if (family == "llama") {
    return PatchedCopy("llama3_rope",
                       {{"rope_parameters", {{"rope_theta", 10000.0}, {"rope_type", "default"}}},
                        {"rope_scaling", nullptr}});
  }
  if (family == "qwen2") {
    return PatchedCopy("qwen2_yarn",
                       {{"rope_parameters", {{"rope_theta", 10000.0}, {"rope_type", "default"}}},
                        {"rope_scaling", nullptr}});
  }
  if (family == "mistral") return PatchedCopy("mistral", {{"sliding_window", nullptr}});
  if (family == "gemma3") return PatchedCopy("gemma3", {{"query_pre_attn_scalar", 16}});
  // llama.cpp's qwen2moe has a mixture of experts in every layer: layer 0 alone (its shared
  // expert included) is such a model.
  if (family == "qwen2_moe") {
    return PatchedCopy("qwen2_moe", {{"num_hidden_layers", 1},
                                     {"layer_types", {"full_attention"}},
                                     {"mlp_only_layers", nlohmann::json::array()}});
  }
  return TinyDir(family);
}

// The tiny Llama with its weights stored as BF16, as most published checkpoints are: the
// streaming writer reads such tensors as views of the file.
std::string Bf16Copy() {
  const std::string dir = ModelDir("llama");
  const SafetensorsFile f = SafetensorsFile::Open(dir + "/model.safetensors");
  SafetensorsWriter w;
  for (const std::string& name : f.names()) {
    const Tensor x = f.GetF32(name);
    Tensor b(DType::kBF16, x.shape());
    for (int64_t i = 0; i < x.numel(); ++i) {
      b.data<uint16_t>()[i] = Fp32ToBf16(x.data<float>()[i]);
    }
    w.Add(name, std::move(b));
  }
  fs::remove(dir + "/model.safetensors");
  w.WriteFile(dir + "/model.safetensors");
  return dir;
}

std::string WriteF32(const std::string& family, const std::string& out_dir,
                     const std::string& dir_in = "") {
  const std::string dir = dir_in.empty() ? TinyDir(family) : dir_in;
  const std::string out = out_dir + "/" + family + ".gguf";
  GgufExportOptions go;
  go.file_type = GgufFileType::kF32;
  QuantizeToGguf(dir, FolderTokenizer(dir), Rtn(), go, out);
  return out;
}

constexpr const char* kText =
    "The quick brown fox, 12345 times: it's <b>bold</b>!\n\n  Caf\xC3\xA9 \xE6\x97\xA5 end";

class GgufFromHf : public ::testing::TestWithParam<const char*> {};

// F32 weights go through unchanged, so the GGUF model must compute the folder's logits up to
// summation order (measured below 1e-5 at these widths; a wrong q/k order, norm or rope moves
// them by more than 0.1).
TEST_P(GgufFromHf, F32FileComputesTheFolderModelWithItsTokenizer) {
  const std::string family = GetParam();
  const std::string dir = family == "llama-bf16" ? Bf16Copy() : ModelDir(family);
  const std::string out = WriteF32(family, test::MakeTempDir("gguf-from-hf"), dir);
  const Model hf = Model::Load(dir, LoadOptions{.int4 = false});
  const Model gg = Model::Load(out, LoadOptions{.int4 = false});
  const Tokenizer tok = FolderTokenizer(dir);
  const Tokenizer tok_back = Tokenizer::FromGguf(GgufFile::Open(out));
  const std::vector<int32_t> ids = tok.Encode(kText, true, false);
  EXPECT_EQ(tok_back.Encode(kText, true, false), ids);
  EXPECT_EQ(tok_back.Encode(kText, true, true), tok.Encode(kText, true, true));
  EXPECT_EQ(tok_back.vocab_size(), tok.vocab_size());
  EXPECT_EQ(tok_back.chat_template(), tok.chat_template());

  std::vector<int32_t> prompt(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 24));
  const std::vector<float> a = test::PromptLogits(hf, prompt), b = test::PromptLogits(gg, prompt);
  ASSERT_EQ(a.size(), b.size());
  float worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  EXPECT_LT(worst, 1e-4f) << family;
  std::printf("%s: %zu tokens, max |logit diff| %.3g\n", family.c_str(), prompt.size(), worst);

  const GgufFile f = GgufFile::Open(out);
  EXPECT_EQ(f.GetString("general.name"), fs::path(dir).filename().string());
  EXPECT_EQ(f.GetString("tokenizer.ggml.pre"), "llama-bpe");
  EXPECT_EQ(f.GetUint("general.file_type"), 0u);
}

// Llama and Mistral have llama.cpp's interleaved q/k rows, Qwen2 q/k/v biases, Gemma 3 its
// 1 + w norms and sliding window key, Phi-3 its fused tensors; llama-bf16 is stored as BF16;
// the mixtures of experts their stacked 3-D expert tensors (Mixtral written as "llama").
INSTANTIATE_TEST_SUITE_P(Families, GgufFromHf,
                         ::testing::Values("llama", "llama-bf16", "mistral", "qwen2", "qwen3",
                                           "phi3", "gemma3", "mixtral", "qwen3_moe", "qwen2_moe"));

// Settings llama.cpp's GGUF metadata has no room for are named, and nothing is written.
TEST(GgufFromHfErrors, UnrepresentableSettingsAreRefusedBeforeWriting) {
  const std::string dir = test::MakeTempDir("gguf-from-hf-errors");
  const struct {
    const char* family;
    const char* message;
  } cases[] = {
      {"llama3_rope", "rope_scaling type 'llama3'"},
      {"qwen2_yarn", "rope_scaling type 'yarn'"},
      // Gemma 3 GGUF files scale queries by head_dim (16); this model by 24.
      {"gemma3", "query_pre_attn_scalar 24 (GGUF holds 16)"},
      // llama.cpp writes Mistral as "llama", which has no sliding window.
      {"mistral", "sliding_window (per layer)"},
      // llama.cpp's qwen2moe has no dense layers (this model's layer 1 is one).
      {"qwen2_moe", "mixture-of-experts layers"},
  };
  for (const auto& c : cases) {
    const std::string out = dir + "/" + c.family + ".gguf";
    test::ExpectError([&] { WriteF32(c.family, dir); }, {c.message});
    EXPECT_FALSE(fs::exists(out)) << c.family;
  }
  EXPECT_TRUE(fs::is_empty(dir));
}

}  // namespace
}  // namespace awq
