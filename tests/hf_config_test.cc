// Tests for config.json parsing, validation and writing: the real SmolLM2-135M-Instruct and
// Llama-3.1-8B configs (as transformers 4.x and 5.x write them), defaults, and error messages.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/model_config.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace awq {
namespace {

using nlohmann::json;

using test::ExpectError;

// Every field, so that a round trip that drops one fails.
void ExpectSameConfig(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.architecture, b.architecture);
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
  EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  EXPECT_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
  EXPECT_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
  EXPECT_EQ(a.rope_scaling.original_max_position_embeddings,
            b.rope_scaling.original_max_position_embeddings);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.attention_bias, b.attention_bias);
  EXPECT_EQ(a.mlp_bias, b.mlp_bias);
  EXPECT_EQ(a.hidden_act, b.hidden_act);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
}

// A minimal valid config with `patch` merged over it (null values remove keys).
std::string Config(const json& patch) {
  json j = {{"model_type", "llama"},    {"vocab_size", 32000},     {"hidden_size", 256},
            {"intermediate_size", 688}, {"num_hidden_layers", 2},  {"num_attention_heads", 8},
            {"num_key_value_heads", 4}, {"rms_norm_eps", 1e-5},    {"bos_token_id", 1},
            {"eos_token_id", 2},        {"torch_dtype", "float16"}};
  j.merge_patch(patch);
  return j.dump();
}

TEST(HfConfig, SmolLM2Instruct) {
  const std::string path = test::DataPath("config_smollm2_135m.json");
  const ModelConfig c = LoadHfConfig(path);
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.num_hidden_layers, 30);
  EXPECT_EQ(c.num_attention_heads, 9);
  EXPECT_EQ(c.num_key_value_heads, 3);
  EXPECT_EQ(c.head_dim, 64);  // absent from the file: 576 / 9
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 100000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(HfConfig, Llama31WithLlama3RopeScaling) {
  const ModelConfig c = LoadHfConfig(test::DataPath("config_llama31_8b.json"));
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
}

TEST(HfConfig, Transformers5SpellingMatches4x) {
  // Same model saved by transformers 5: "rope_parameters" (with rope_theta inside) and "dtype".
  const ModelConfig v4 = LoadHfConfig(test::DataPath("config_llama31_8b.json"));
  const ModelConfig v5 = LoadHfConfig(test::DataPath("config_llama31_8b_tf5.json"));
  ExpectSameConfig(v4, v5);
}

TEST(HfConfig, LoadFromFolder) {
  const std::string dir = test::MakeTempDir("hfcfg");
  std::ofstream(dir + "/config.json")
      << ReadFileToString(test::DataPath("config_smollm2_135m.json"));
  EXPECT_EQ(LoadHfConfig(dir).hidden_size, 576);
  ExpectError([&] { LoadHfConfig(dir + "/missing.json"); }, {dir + "/missing.json"});
}

TEST(HfConfig, RoundTripThroughJson) {
  for (const char* name :
       {"config_smollm2_135m.json", "config_llama31_8b.json", "config_llama31_8b_tf5.json"}) {
    SCOPED_TRACE(name);
    const ModelConfig c = LoadHfConfig(test::DataPath(name));
    const std::string text = HfConfigToJson(c);
    ExpectSameConfig(ParseHfConfig(text, "written.json"), c);
  }
  ModelConfig linear =
      ParseHfConfig(Config({{"rope_scaling", {{"type", "linear"}, {"factor", 2.5}}},
                            {"eos_token_id", nullptr},
                            {"bos_token_id", nullptr}}),
                    "linear.json");
  ExpectSameConfig(ParseHfConfig(HfConfigToJson(linear), "linear2.json"), linear);
}

TEST(HfConfig, WritesBackTheSourceKeys) {
  // A config read from config.json is written back with every key it had, including those the
  // model does not use, and without a stale quantization_config.
  const ModelConfig c = ParseHfConfig(
      Config({{"custom_key", "kept"}, {"quantization_config", {{"bits", 4}}}}), "cfg.json");
  const std::string text = HfConfigToJson(c);
  EXPECT_NE(text.find("\"custom_key\": \"kept\""), std::string::npos);
  EXPECT_EQ(text.find("quantization_config"), std::string::npos);
  ExpectSameConfig(ParseHfConfig(text, "again.json"), c);
}

TEST(HfConfig, WritesLikeTransformers) {
  // The generated form (a model read from GGUF has no config.json to keep).
  ModelConfig c = LoadHfConfig(test::DataPath("config_smollm2_135m.json"));
  c.source_json.clear();
  const std::string text = HfConfigToJson(c);
  // Two-space indent, keys sorted, trailing newline: json.dumps(indent=2, sort_keys=True) + "\n".
  EXPECT_EQ(text.substr(0, 36), "{\n  \"architectures\": [\n    \"LlamaFor");
  EXPECT_EQ(text.back(), '\n');
  std::vector<std::string> keys;
  size_t pos = 0;
  while ((pos = text.find("\n  \"", pos)) != std::string::npos) {
    pos += 4;
    keys.push_back(text.substr(pos, text.find('"', pos) - pos));
  }
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  for (const char* key : {"architectures",
                          "attention_bias",
                          "bos_token_id",
                          "eos_token_id",
                          "head_dim",
                          "hidden_act",
                          "hidden_size",
                          "intermediate_size",
                          "max_position_embeddings",
                          "mlp_bias",
                          "model_type",
                          "num_attention_heads",
                          "num_hidden_layers",
                          "num_key_value_heads",
                          "rms_norm_eps",
                          "rope_scaling",
                          "rope_theta",
                          "tie_word_embeddings",
                          "torch_dtype",
                          "vocab_size"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end()) << key;
  }
  EXPECT_NE(text.find("\"rms_norm_eps\": 1e-05,"), std::string::npos);
  EXPECT_NE(text.find("\"rope_scaling\": null,"), std::string::npos);
  EXPECT_NE(text.find("\"eos_token_id\": 2,"), std::string::npos);
  const std::string llama = HfConfigToJson(LoadHfConfig(test::DataPath("config_llama31_8b.json")));
  EXPECT_NE(llama.find("\"rope_scaling\": {\n    \"factor\": 8.0,\n    \"high_freq_factor\": 4.0,"),
            std::string::npos);
  EXPECT_NE(llama.find("\"rope_type\": \"llama3\""), std::string::npos);
  EXPECT_NE(llama.find("\"eos_token_id\": [\n    128001,"), std::string::npos);
}

TEST(HfConfig, Defaults) {
  const ModelConfig c = ParseHfConfig(Config({{"num_key_value_heads", nullptr},
                                              {"rms_norm_eps", nullptr},
                                              {"bos_token_id", nullptr},
                                              {"eos_token_id", nullptr},
                                              {"torch_dtype", nullptr}}),
                                      "min.json");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.num_key_value_heads, 8);  // no GQA
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);  // LlamaConfig's default
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.torch_dtype, "float32");
  // An explicit null behaves like an absent key, as in transformers.
  EXPECT_EQ(ParseHfConfig(Config({{"head_dim", nullptr}}), "n.json").head_dim, 32);
  // "default" rope type means no scaling.
  EXPECT_EQ(ParseHfConfig(Config({{"rope_scaling", {{"rope_type", "default"}}}}), "d.json")
                .rope_scaling.type,
            RopeScalingType::kNone);
  // Explicit head_dim need not be hidden_size / heads (Mistral-NeMo style).
  EXPECT_EQ(ParseHfConfig(Config({{"head_dim", 64}}), "h.json").head_dim, 64);
}

TEST(HfConfig, OtherLlamaFamilyModelTypes) {
  const ModelConfig m =
      ParseHfConfig(Config({{"model_type", "mistral"}, {"sliding_window", 4096}}), "mistral.json");
  EXPECT_EQ(m.architecture, "MistralForCausalLM");
  const ModelConfig q = ParseHfConfig(Config({{"model_type", "qwen2"}}), "qwen2.json");
  EXPECT_EQ(q.architecture, "Qwen2ForCausalLM");
  EXPECT_TRUE(q.attention_bias);  // Qwen2's q/k/v projections always have biases
  EXPECT_EQ(ParseHfConfig(Config({{"model_type", "qwen2"}, {"attention_bias", false}}), "q.json")
                .attention_bias,
            false);
}

TEST(HfConfig, ErrorsNameFileKeyAndValue) {
  ExpectError(
      [] {
        ParseHfConfig(Config({{"rope_scaling", {{"rope_type", "longrope"}, {"factor", 4}}}}),
                      "cfg.json");
      },
      {"cfg.json", "rope_scaling.rope_type", "longrope"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"rope_scaling", {{"type", "dynamic"}}}}), "cfg.json");
      },
      {"cfg.json", "rope_scaling.rope_type", "dynamic"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"hidden_act", "gelu"}}), "cfg.json");
      },
      {"cfg.json", "hidden_act", "gelu"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"model_type", "gpt2"}}), "cfg.json");
      },
      {"cfg.json", "model_type", "gpt2"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"model_type", nullptr}}), "cfg.json");
      },
      {"cfg.json", "model_type", "missing"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"hidden_size", nullptr}}), "cfg.json");
      },
      {"cfg.json", "hidden_size", "missing"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"hidden_size", "576"}}), "cfg.json");
      },
      {"cfg.json", "hidden_size", "integer", "\"576\""});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"hidden_size", 576.5}}), "cfg.json");
      },
      {"cfg.json", "hidden_size", "576.5"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"num_key_value_heads", 3}}), "cfg.json");
      },
      {"cfg.json", "num_key_value_heads", "3", "8"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"hidden_size", 100}, {"head_dim", nullptr}}), "cfg.json");
      },
      {"cfg.json", "hidden_size", "100", "num_attention_heads 8"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"vocab_size", 0}}), "cfg.json");
      },
      {"cfg.json", "vocab_size", "0"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"eos_token_id", {2, "x"}}}), "cfg.json");
      },
      {"cfg.json", "eos_token_id[1]", "\"x\""});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"eos_token_id", 40000}}), "cfg.json");
      },
      {"cfg.json", "eos_token_id", "40000", "32000"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"tie_word_embeddings", "yes"}}), "cfg.json");
      },
      {"cfg.json", "tie_word_embeddings", "\"yes\""});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"torch_dtype", "float64"}}), "cfg.json");
      },
      {"cfg.json", "torch_dtype", "float64"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"rope_scaling",
                               {{"rope_type", "llama3"},
                                {"factor", 8.0},
                                {"high_freq_factor", 4.0},
                                {"original_max_position_embeddings", 8192}}}}),
                      "cfg.json");
      },
      {"cfg.json", "rope_scaling.low_freq_factor", "missing"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"rope_scaling", {{"rope_type", "linear"}}}}), "cfg.json");
      },
      {"cfg.json", "rope_scaling.factor", "missing"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"rope_scaling", 2}}), "cfg.json");
      },
      {"cfg.json", "rope_scaling", "2"});
  ExpectError(
      [] {
        ParseHfConfig(Config({{"architectures", "Llama"}}), "cfg.json");
      },
      {"cfg.json", "architectures", "\"Llama\""});
  ExpectError([] { ParseHfConfig("{\"model_type\": ", "cfg.json"); }, {"cfg.json", "invalid JSON"});
  ExpectError([] { ParseHfConfig("[]", "cfg.json"); }, {"cfg.json", "JSON object"});
}

TEST(HfConfig, ValidateStruct) {
  ModelConfig c = LoadHfConfig(test::DataPath("config_smollm2_135m.json"));
  c.Validate("ok");
  ModelConfig odd = c;
  odd.head_dim = 63;
  ExpectError([&] { odd.Validate("src"); }, {"src", "head_dim", "63"});
  ModelConfig eps = c;
  eps.rms_norm_eps = 0;
  ExpectError([&] { eps.Validate("src"); }, {"src", "rms_norm_eps"});
  ModelConfig rope = c;
  rope.rope_scaling.type = RopeScalingType::kLlama3;
  rope.rope_scaling.low_freq_factor = 4.0;
  rope.rope_scaling.high_freq_factor = 1.0;
  ExpectError([&] { rope.Validate("src"); }, {"src", "high_freq_factor", "4.0", "1.0"});
  ModelConfig bos = c;
  bos.bos_token_id = 49152;
  ExpectError([&] { bos.Validate("src"); }, {"src", "bos_token_id", "49152"});
}

}  // namespace
}  // namespace awq
