// Tests for QuantConfig: validation messages, per-linear parameter resolution (overrides, skips,
// modules_to_not_convert), presets, and the JSON override file with its error messages.
#include "awq/quant_config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>

#include "awq/error.h"
#include "test_util.h"

namespace awq {
namespace {

using test::ExpectError;

void ExpectInvalid(const std::function<void(QuantConfig&)>& edit,
                   std::initializer_list<std::string> parts) {
  QuantConfig c;
  edit(c);
  ExpectError([&] { c.Validate(); }, parts);
}

TEST(QuantConfigTest, DefaultsAreAutoAwqs) {
  const QuantConfig c;
  EXPECT_EQ(c.w_bit, 4);
  EXPECT_EQ(c.q_group_size, 128);
  EXPECT_TRUE(c.zero_point);
  EXPECT_EQ(c.version, "gemm");
  EXPECT_TRUE(c.duo_scaling);
  EXPECT_TRUE(c.apply_clip);
  EXPECT_EQ(c.n_grid, 20);
  EXPECT_EQ(c.max_shrink, 0.5);
  EXPECT_EQ(c.n_sample_token, 512);
  EXPECT_EQ(c.max_calib_samples, 128);
  EXPECT_EQ(c.max_calib_seq_len, 512);
  c.Validate();
}

TEST(QuantConfigTest, ValidateNamesOptionAndValue) {
  ExpectInvalid([](QuantConfig& c) { c.w_bit = 1; }, {"w_bit = 1", "between 2 and 8"});
  ExpectInvalid([](QuantConfig& c) { c.w_bit = 9; }, {"w_bit = 9"});
  ExpectInvalid([](QuantConfig& c) { c.q_group_size = 0; }, {"q_group_size = 0"});
  ExpectInvalid([](QuantConfig& c) { c.q_group_size = 100; },
                {"q_group_size = 100", "multiple of 8"});
  ExpectInvalid([](QuantConfig& c) { c.q_group_size = -2; }, {"q_group_size = -2"});
  ExpectInvalid([](QuantConfig& c) { c.n_grid = 0; }, {"n_grid = 0"});
  ExpectInvalid([](QuantConfig& c) { c.max_shrink = 1.0; }, {"max_shrink = 1.0"});
  ExpectInvalid([](QuantConfig& c) { c.max_shrink = -0.1; }, {"max_shrink = -0.1"});
  ExpectInvalid([](QuantConfig& c) { c.n_sample_token = 0; }, {"n_sample_token = 0"});
  ExpectInvalid([](QuantConfig& c) { c.max_calib_samples = -1; }, {"max_calib_samples = -1"});
  ExpectInvalid([](QuantConfig& c) { c.max_calib_seq_len = 0; }, {"max_calib_seq_len = 0"});
  ExpectInvalid([](QuantConfig& c) { c.version = "gemv_fast"; },
                {"version = 'gemv_fast'", "awqcpp_packed"});
  ExpectInvalid([](QuantConfig& c) { c.modules_to_not_convert = {""}; },
                {"modules_to_not_convert"});
  // The GEMM layout holds one uniform 4-bit setting.
  ExpectInvalid([](QuantConfig& c) { c.w_bit = 3; }, {"w_bit = 3", "'gemm'", "awqcpp_packed"});
  ExpectInvalid(
      [](QuantConfig& c) {
        c.overrides = {{"down_proj", 8, {}, false}};
      },
      {"overrides[0].bits = 8", "'gemm'"});
  ExpectInvalid(
      [](QuantConfig& c) {
        c.overrides = {{"down_proj", {}, 64, false}};
      },
      {"overrides[0].group_size = 64", "'gemm'"});
  ExpectInvalid(
      [](QuantConfig& c) {
        c.overrides = {{"(unclosed", {}, {}, true}};
      },
      {"overrides[0].pattern", "'(unclosed'", "not a valid regex", "offset 9"});
  // Nested quantifiers, which std::regex accepted and then backtracked on for minutes (found by
  // libFuzzer; fuzz/seeds/quant_config_fuzz/timeout-*), do not compile.
  ExpectInvalid(
      [](QuantConfig& c) {
        c.overrides = {{"[a-z]+_pr****oj$", {}, {}, true}};
      },
      {"overrides[0].pattern", "not a valid regex"});
  ExpectInvalid([](QuantConfig& c) { c.overrides = {{"", {}, {}, true}}; }, {"pattern is empty"});
  ExpectInvalid(
      [](QuantConfig& c) {
        c.version = kLayoutPacked;
        c.overrides = {{"x", 1, {}, false}};
      },
      {"overrides[0].bits = 1"});
  ExpectInvalid(
      [](QuantConfig& c) {
        c.version = kLayoutPacked;
        c.overrides = {{"x", {}, 12, false}};
      },
      {"overrides[0].group_size = 12"});
  // Accepted: other multiples of 8, -1, skipping under GEMM, per-layer settings when packed.
  QuantConfig ok;
  ok.q_group_size = 96;
  ok.Validate();
  ok.q_group_size = -1;
  ok.Validate();
  ok.overrides = {{"lm_head", {}, {}, true}};
  ok.Validate();
  ok.version = kLayoutPacked;
  ok.w_bit = 3;
  ok.overrides = {{"down_proj", 8, 64, false}};
  ok.Validate();
}

TEST(QuantConfigTest, ParamsForResolvesOverridesInOrder) {
  QuantConfig c;
  c.version = kLayoutPacked;
  c.overrides = {{"mlp\\.down_proj$", 8, {}, false},
                 {"layers\\.0\\.", {}, 64, false},
                 {"layers\\.1\\.self_attn", {}, {}, true},
                 {"layers\\.1\\.self_attn\\.o_proj", 6, {}, false}};
  const QuantParams def = *c.ParamsFor("model.layers.5.self_attn.q_proj");
  EXPECT_EQ(def.bits, 4);
  EXPECT_EQ(def.group_size, 128);
  EXPECT_TRUE(def.zero_point);
  const QuantParams down = *c.ParamsFor("model.layers.5.mlp.down_proj");
  EXPECT_EQ(down.bits, 8);
  EXPECT_EQ(down.group_size, 128);
  // Both the first and the second override match: each field from the last that sets it.
  const QuantParams down0 = *c.ParamsFor("model.layers.0.mlp.down_proj");
  EXPECT_EQ(down0.bits, 8);
  EXPECT_EQ(down0.group_size, 64);
  // regex_search: "layers\.0\." does not match layer 10.
  EXPECT_EQ(c.ParamsFor("model.layers.10.mlp.up_proj")->group_size, 128);
  // Skipped, except where a later override matches and does not skip.
  EXPECT_FALSE(c.ParamsFor("model.layers.1.self_attn.q_proj"));
  const std::optional<QuantParams> o = c.ParamsFor("model.layers.1.self_attn.o_proj");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->bits, 6);
}

TEST(QuantConfigTest, ParamsForSkipsHeadsEmbeddingsAndNotConverted) {
  QuantConfig c;
  c.modules_to_not_convert = {"gate", "layers.3."};
  EXPECT_FALSE(c.ParamsFor("lm_head"));
  EXPECT_FALSE(c.ParamsFor("model.embed_tokens"));
  // AutoAWQ's substring semantics: "gate" also matches gate_proj.
  EXPECT_FALSE(c.ParamsFor("model.layers.0.block_sparse_moe.gate"));
  EXPECT_FALSE(c.ParamsFor("model.layers.0.mlp.gate_proj"));
  EXPECT_FALSE(c.ParamsFor("model.layers.3.mlp.up_proj"));
  EXPECT_TRUE(c.ParamsFor("model.layers.13.mlp.up_proj"));
}

// A valid pattern that backtracks exponentially stops at the match limit with an error naming
// it and the module, instead of hanging the run.
TEST(QuantConfigTest, BacktrackingPatternIsAnErrorNotAHang) {
  QuantConfig c;
  c.overrides = {{"^(\\w|\\w\\w)+$", {}, {}, true}};
  c.Validate();
  // Every split of the 60 word characters into runs of 1 and 2 is tried before "." fails "$".
  const std::string name = "layers_0_down_proj" + std::string(42, 'x') + ".weight";
  ExpectError([&] { c.ParamsFor(name); }, {"overrides[0]", "(\\w|\\w\\w)", name, "limit"});
  EXPECT_FALSE(c.ParamsFor("layers_0_down_proj").has_value());  // a few steps: matched, skipped
}

TEST(QuantConfigTest, Presets) {
  const QuantConfig d = QuantPreset("default");
  EXPECT_EQ(d.w_bit, 4);
  EXPECT_EQ(d.q_group_size, 128);
  EXPECT_EQ(d.version, "gemm");
  const QuantConfig c = QuantPreset("conservative");
  EXPECT_EQ(c.w_bit, 4);
  EXPECT_EQ(c.q_group_size, 64);
  EXPECT_TRUE(c.apply_clip);
  EXPECT_EQ(c.version, "gemm");
  const QuantConfig a = QuantPreset("aggressive");
  EXPECT_EQ(a.w_bit, 3);
  EXPECT_EQ(a.q_group_size, 128);
  EXPECT_EQ(a.version, "awqcpp_packed");
  for (const std::string& name : QuantPresetNames()) QuantPreset(name).Validate();
  ExpectError([] { QuantPreset("fast"); },
              {"unknown quantization preset 'fast'", "default, conservative, aggressive"});
}

TEST(QuantConfigTest, LoadOverridesFile) {
  const std::string dir = test::MakeTempDir("quant_config");
  const std::string path = dir + "/overrides.json";
  std::ofstream(path) << R"({
    "version": "AWQCPP_PACKED",
    "w_bit": 3,
    "q_group_size": 64,
    "zero_point": true,
    "apply_clip": false,
    "max_shrink": 0.25,
    "n_grid": 10,
    "modules_to_not_convert": ["gate"],
    "overrides": [
      {"pattern": "down_proj", "bits": 8, "group_size": 128},
      {"pattern": "layers\\.0\\.", "skip": true}
    ]
  })";
  QuantConfig c;
  c.overrides = {{"q_proj", {}, {}, true}};  // kept, and the file's come after it
  LoadQuantOverrides(path, &c);
  EXPECT_EQ(c.version, "awqcpp_packed");
  EXPECT_EQ(c.w_bit, 3);
  EXPECT_EQ(c.q_group_size, 64);
  EXPECT_FALSE(c.apply_clip);
  EXPECT_EQ(c.max_shrink, 0.25);
  EXPECT_EQ(c.n_grid, 10);
  EXPECT_EQ(c.modules_to_not_convert, std::vector<std::string>({"gate"}));
  ASSERT_EQ(c.overrides.size(), 3u);
  EXPECT_EQ(c.overrides[1].pattern, "down_proj");
  EXPECT_EQ(c.overrides[1].bits, 8);
  EXPECT_EQ(c.overrides[1].group_size, 128);
  EXPECT_FALSE(c.overrides[1].skip);
  EXPECT_TRUE(c.overrides[2].skip);
  EXPECT_EQ(c.ParamsFor("model.layers.4.mlp.down_proj")->bits, 8);
  EXPECT_FALSE(c.ParamsFor("model.layers.0.mlp.down_proj"));
  EXPECT_FALSE(c.ParamsFor("model.layers.4.self_attn.q_proj"));
}

TEST(QuantConfigTest, OverrideFileErrorsNameFileKeyAndValue) {
  const auto expect = [](const std::string& text, std::initializer_list<std::string> parts) {
    QuantConfig c;
    c.n_grid = 7;
    ExpectError([&] { ParseQuantOverrides(text, "o.json", &c); }, parts);
    EXPECT_EQ(c.n_grid, 7) << "config changed by a failed load";
    EXPECT_TRUE(c.overrides.empty());
  };
  expect("{", {"o.json", "not valid JSON"});
  expect("[]", {"o.json", "JSON object"});
  expect(R"({"w_bits": 4})", {"o.json", "w_bits", "unknown key"});
  expect(R"({"w_bit": "4"})", {"o.json", "w_bit", "expected an integer", "\"4\""});
  expect(R"({"w_bit": 3})", {"o.json", "w_bit = 3", "'gemm'"});
  expect(R"({"zero_point": 1})", {"o.json", "zero_point", "true or false", "1"});
  expect(R"({"max_shrink": "half"})", {"o.json", "max_shrink", "number"});
  expect(R"({"n_grid": 0})", {"o.json", "n_grid = 0"});
  expect(R"({"overrides": {}})", {"o.json", "overrides", "array"});
  expect(R"({"overrides": [{"bits": 4}]})", {"o.json", "overrides[0]", "\"pattern\""});
  expect(R"({"overrides": [{"pattern": "x", "bitz": 4}]})",
         {"o.json", "overrides[0].bitz", "unknown key"});
  expect(R"({"overrides": [{"pattern": "x", "skip": "yes"}]})",
         {"o.json", "overrides[0].skip", "\"yes\""});
  expect(R"({"version": "awqcpp_packed", "overrides": [{"pattern": "x", "bits": 12}]})",
         {"o.json", "overrides[0].bits = 12"});
  expect(R"({"overrides": [{"pattern": "a[", "skip": true}]})",
         {"o.json", "overrides[0].pattern", "'a['"});
  expect(R"({"modules_to_not_convert": "gate"})", {"o.json", "modules_to_not_convert"});
  ExpectError(
      [] {
        QuantConfig c;
        LoadQuantOverrides("/nonexistent/q.json", &c);
      },
      {"/nonexistent/q.json"});
}

}  // namespace
}  // namespace awq
