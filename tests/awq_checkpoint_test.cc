// Tests for AWQ checkpoint folders: write -> read round trips of a tiny synthetic model in the
// GEMM and packed layouts (sharded), the exact config.json / quant_config.json text, atomic
// writing and overwrite semantics, modules_to_not_convert, and reading AutoAWQ-style configs.
#include "awq/awq_checkpoint.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/half.h"
#include "awq/tokenizer.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace awq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using test::ExpectError;

Tensor RandomTensor(Shape shape, uint32_t seed, float spread = 0.05f) {
  Tensor t(DType::kF32, std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

// A one-layer Llama with GQA: hidden 128, intermediate 256, 4 heads of 32, 2 KV heads.
ModelConfig TinyConfig() {
  ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 32;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

struct Linear {
  std::string name;
  int64_t out, in;
};
const std::vector<Linear>& TinyLinears() {
  static const std::vector<Linear> kLinears = {
      {"model.layers.0.self_attn.q_proj", 128, 128}, {"model.layers.0.self_attn.k_proj", 64, 128},
      {"model.layers.0.self_attn.v_proj", 64, 128},  {"model.layers.0.self_attn.o_proj", 128, 128},
      {"model.layers.0.mlp.gate_proj", 256, 128},    {"model.layers.0.mlp.up_proj", 256, 128},
      {"model.layers.0.mlp.down_proj", 128, 256}};
  return kLinears;
}

// The synthetic model fed to a writer: full-precision tensors and every linear quantized with
// the parameters `qc` gives it (or kept as a plain weight when qc skips it).
struct TinyModel {
  std::map<std::string, Tensor> plain;             // HF name -> F32 tensor
  std::map<std::string, QuantizedLinear> linears;  // module name -> quantized
};

TinyModel BuildModel(const QuantConfig& qc, AwqCheckpointWriter* writer) {
  TinyModel m;
  uint32_t seed = 1;
  const auto add_plain = [&](const std::string& name, Shape shape) {
    Tensor t = RandomTensor(std::move(shape), seed++);
    m.plain[name] = t;
    writer->AddTensor(name, t);
  };
  add_plain("model.embed_tokens.weight", {32, 128});
  add_plain("model.layers.0.input_layernorm.weight", {128});
  for (const Linear& l : TinyLinears()) {
    const Tensor w = RandomTensor({l.out, l.in}, seed++);
    const std::optional<QuantParams> p = qc.ParamsFor(l.name);
    if (!p) {
      m.plain[l.name + ".weight"] = w;
      writer->AddTensor(l.name + ".weight", w);
      continue;
    }
    m.linears[l.name] = QuantizeLinear(w.data<float>(), l.out, l.in, *p);
    writer->AddQuantized(l.name, m.linears[l.name]);
    if (l.name.find("o_proj") != std::string::npos) add_plain(l.name + ".bias", {l.out});
  }
  add_plain("model.layers.0.post_attention_layernorm.weight", {128});
  add_plain("model.norm.weight", {128});
  add_plain("lm_head.weight", {32, 128});
  return m;
}

std::vector<float> Dequant(const QuantizedLinear& q) {
  std::vector<float> w(static_cast<size_t>(q.out * q.in));
  DequantizeLinear(q, w.data());
  return w;
}

// Reads the folder back and compares every tensor with what was written.
void ExpectReadsBack(const std::string& dir, const TinyModel& m, DType plain_dtype) {
  const std::optional<QuantConfig> qc = ReadAwqQuantConfig(dir);
  ASSERT_TRUE(qc);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(dir);
  for (const auto& [name, q] : m.linears) {
    const std::optional<QuantParams> p = qc->ParamsFor(name);
    ASSERT_TRUE(p) << name;
    EXPECT_EQ(p->bits, q.params.bits) << name;
    EXPECT_EQ(p->group_size, q.params.group_size) << name;
    EXPECT_FALSE(ckpt.Has(name + ".weight"));
    const Tensor w = DequantizeAwqWeight(ckpt, name, *qc);
    ASSERT_EQ(w.shape(), Shape({q.out, q.in})) << name;
    const std::vector<float> want = Dequant(q);
    EXPECT_EQ(std::vector<float>(w.data<float>(), w.data<float>() + w.numel()), want) << name;
    const QuantizedLinear back = ReadAwqLinear(ckpt, name, *qc);
    EXPECT_EQ(back.q, q.q) << name;
    EXPECT_EQ(back.scales, q.scales) << name;
  }
  for (const auto& [name, t] : m.plain) {
    ASSERT_TRUE(ckpt.Has(name)) << name;
    EXPECT_EQ(ckpt.dtype(name), plain_dtype) << name;
    const Tensor got = ckpt.GetF32(name);
    ASSERT_EQ(got.shape(), t.shape());
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float x = t.data<float>()[i];
      const float want = plain_dtype == DType::kF16    ? Fp16ToFp32(Fp32ToFp16(x))
                         : plain_dtype == DType::kBF16 ? Bf16ToFp32(Fp32ToBf16(x))
                                                       : x;
      ASSERT_EQ(got.data<float>()[i], want) << name << " element " << i;
    }
  }
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(AwqCheckpointTest, GemmRoundTripSharded) {
  const std::string parent = test::MakeTempDir("awq_ckpt");
  const std::string dir = parent + "/tiny-awq";
  const QuantConfig qc;
  AwqCheckpointWriter writer;
  const TinyModel m = BuildModel(qc, &writer);
  writer.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 20000, false);

  EXPECT_EQ(ListDir(parent), std::vector<std::string>({"tiny-awq"}));  // no temp folder left
  const std::vector<std::string> files = ListDir(dir);
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors.index.json",
                        "quant_config.json"}) {
    EXPECT_NE(std::find(files.begin(), files.end(), f), files.end()) << f;
  }
  int shards = 0;
  for (const std::string& f : files) shards += f.rfind("model-", 0) == 0;
  EXPECT_GT(shards, 2);
  ExpectReadsBack(dir, m, DType::kF16);

  // The GEMM tensors have AutoAWQ's shapes and dtypes.
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(dir);
  const std::string down = "model.layers.0.mlp.down_proj";
  EXPECT_EQ(ckpt.shape(down + ".qweight"), Shape({256, 16}));
  EXPECT_EQ(ckpt.dtype(down + ".qweight"), DType::kI32);
  EXPECT_EQ(ckpt.shape(down + ".qzeros"), Shape({2, 16}));
  EXPECT_EQ(ckpt.shape(down + ".scales"), Shape({2, 128}));
  EXPECT_EQ(ckpt.dtype(down + ".scales"), DType::kF16);

  // config.json: the model config, torch_dtype float16, and quantization_config exactly as
  // AutoAWQ + transformers write it.
  const std::string config_text = ReadFileToString(dir + "/config.json");
  EXPECT_NE(config_text.find(R"(  "quantization_config": {
    "bits": 4,
    "group_size": 128,
    "modules_to_not_convert": null,
    "quant_method": "awq",
    "version": "gemm",
    "zero_point": true
  },
)"),
            std::string::npos)
      << config_text;
  const ModelConfig back = LoadHfConfig(dir + "/config.json");
  EXPECT_EQ(back.hidden_size, 128);
  EXPECT_EQ(back.num_key_value_heads, 2);
  EXPECT_EQ(back.torch_dtype, "float16");
  EXPECT_EQ(ReadFileToString(dir + "/quant_config.json"), R"({
  "zero_point": true,
  "q_group_size": 128,
  "w_bit": 4,
  "version": "GEMM",
  "modules_to_not_convert": null
}
)");
  const json gen = json::parse(ReadFileToString(dir + "/generation_config.json"));
  EXPECT_EQ(gen, json({{"bos_token_id", 1}, {"eos_token_id", 2}}));

  const QuantConfig read = *ReadAwqQuantConfig(dir);
  EXPECT_EQ(read.w_bit, 4);
  EXPECT_EQ(read.q_group_size, 128);
  EXPECT_TRUE(read.zero_point);
  EXPECT_EQ(read.version, "gemm");
  EXPECT_TRUE(read.modules_to_not_convert.empty());
  EXPECT_TRUE(read.overrides.empty());

  // For tools/check_awq_layout.py: $AWQ_LAYOUT_CHECK_DIR/ckpt is this checkpoint and
  // $AWQ_LAYOUT_CHECK_DIR/reference.safetensors our dequantized weights, which the script
  // compares with AutoAWQ's unpacking of the checkpoint.
  if (const char* out = std::getenv("AWQ_LAYOUT_CHECK_DIR")) {
    fs::create_directories(out);
    writer.Write(std::string(out) + "/ckpt", HfConfigToJson(TinyConfig()), qc, nullptr, 20000,
                 true);
    SafetensorsWriter ref;
    for (const auto& [name, q] : m.linears) {
      Tensor t(DType::kF32, {q.out, q.in});
      DequantizeLinear(q, t.data<float>());
      ref.Add(name + ".weight", t);
    }
    ref.WriteFile(std::string(out) + "/reference.safetensors");
  }
}

TEST(AwqCheckpointTest, SymmetricGemmRoundTrip) {
  const std::string dir = test::MakeTempDir("awq_ckpt") + "/sym";
  QuantConfig qc;
  qc.zero_point = false;
  qc.q_group_size = 64;
  AwqCheckpointWriter writer;
  const TinyModel m = BuildModel(qc, &writer);
  writer.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 1 << 30, false);
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  const QuantConfig read = *ReadAwqQuantConfig(dir);
  EXPECT_FALSE(read.zero_point);
  EXPECT_EQ(read.q_group_size, 64);
  ExpectReadsBack(dir, m, DType::kF16);
}

TEST(AwqCheckpointTest, PackedW3WithPerLayerSettings) {
  const std::string dir = test::MakeTempDir("awq_ckpt") + "/w3";
  QuantConfig qc = QuantPreset("aggressive");
  qc.overrides = {{"down_proj", 8, 64, false}, {"k_proj", 2, -1, false}};
  AwqCheckpointWriter writer;
  const TinyModel m = BuildModel(qc, &writer);
  writer.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 30000, false);
  ExpectReadsBack(dir, m, DType::kF16);

  const json cfg = json::parse(ReadFileToString(dir + "/config.json"));
  EXPECT_EQ(cfg["quantization_config"],
            json::parse(R"({"bits": 3, "group_size": 128, "modules_to_not_convert": null,
                            "quant_method": "awq", "version": "awqcpp_packed", "zero_point": true,
                            "awqcpp_modules": {
                              "model.layers.0.mlp.down_proj": {"bits": 8, "group_size": 64},
                              "model.layers.0.self_attn.k_proj": {"bits": 2, "group_size": -1}}})"));
  EXPECT_EQ(json::parse(ReadFileToString(dir + "/quant_config.json"))["version"], "AWQCPP_PACKED");
  const QuantConfig read = *ReadAwqQuantConfig(dir);
  EXPECT_EQ(read.version, "awqcpp_packed");
  EXPECT_EQ(read.w_bit, 3);
  EXPECT_EQ(read.ParamsFor("model.layers.0.mlp.down_proj")->bits, 8);
  EXPECT_EQ(read.ParamsFor("model.layers.0.mlp.down_proj")->group_size, 64);
  EXPECT_EQ(read.ParamsFor("model.layers.0.self_attn.k_proj")->group_size, -1);
  EXPECT_EQ(read.ParamsFor("model.layers.0.self_attn.q_proj")->bits, 3);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(dir);
  // [in, ceil(out * bits / 32)]: 128 columns at 3 bits are 12 words.
  EXPECT_EQ(ckpt.shape("model.layers.0.self_attn.q_proj.qweight"), Shape({128, 12}));
  EXPECT_EQ(ckpt.shape("model.layers.0.mlp.down_proj.qweight"), Shape({256, 32}));

  // 4-bit linears are converted from the GEMM packing they were added in.
  const std::string dir4 = test::MakeTempDir("awq_ckpt") + "/w4packed";
  QuantConfig qc4;
  qc4.version = kLayoutPacked;
  AwqCheckpointWriter writer4;
  const TinyModel m4 = BuildModel(qc4, &writer4);
  writer4.Write(dir4, HfConfigToJson(TinyConfig()), qc4, nullptr, 1 << 30, false);
  ExpectReadsBack(dir4, m4, DType::kF16);
}

TEST(AwqCheckpointTest, UnquantizedLinearsAreListedAsNotConverted) {
  const std::string dir = test::MakeTempDir("awq_ckpt") + "/skip";
  QuantConfig qc;
  qc.overrides = {{"o_proj", {}, {}, true}};
  qc.modules_to_not_convert = {"gate_proj"};
  AwqCheckpointWriter writer;
  const TinyModel m = BuildModel(qc, &writer);
  ASSERT_EQ(m.linears.count("model.layers.0.self_attn.o_proj"), 0u);
  writer.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 1 << 30, false);
  const json cfg = json::parse(ReadFileToString(dir + "/config.json"));
  // The config's own entries, then the plain 2-D linear weights no entry covers; lm_head and
  // embeddings are never converted, so they are not listed.
  EXPECT_EQ(cfg["quantization_config"]["modules_to_not_convert"],
            json({"gate_proj", "model.layers.0.self_attn.o_proj"}));
  const QuantConfig read = *ReadAwqQuantConfig(dir);
  EXPECT_FALSE(read.ParamsFor("model.layers.0.self_attn.o_proj"));
  EXPECT_FALSE(read.ParamsFor("model.layers.0.mlp.gate_proj"));
  ExpectReadsBack(dir, m, DType::kF16);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(dir);
  ExpectError([&] { DequantizeAwqWeight(ckpt, "model.layers.0.self_attn.o_proj", read); },
              {"model.layers.0.self_attn.o_proj", "full precision"});
  QuantConfig wrong = read;
  wrong.modules_to_not_convert.clear();
  ExpectError([&] { DequantizeAwqWeight(ckpt, "model.layers.0.self_attn.o_proj", wrong); },
              {"missing tensor model.layers.0.self_attn.o_proj.qweight"});
}

TEST(AwqCheckpointTest, DtypeOfFullPrecisionTensors) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const std::string dir = test::MakeTempDir("awq_ckpt") + "/dt";
    const QuantConfig qc;
    AwqCheckpointWriter writer;
    writer.dtype = dtype;
    const TinyModel m = BuildModel(qc, &writer);
    writer.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 1 << 30, false);
    ExpectReadsBack(dir, m, dtype);
    EXPECT_EQ(LoadHfConfig(dir + "/config.json").torch_dtype,
              dtype == DType::kF32 ? "float32" : "bfloat16");
    const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(dir);
    EXPECT_EQ(ckpt.dtype("model.layers.0.mlp.up_proj.scales"), DType::kF16);
  }
}

TEST(AwqCheckpointTest, WritesAtomicallyAndOverwritesOnlyWhenAsked) {
  const std::string parent = test::MakeTempDir("awq_ckpt");
  const std::string dir = parent + "/model";
  const QuantConfig qc;
  AwqCheckpointWriter writer;
  BuildModel(qc, &writer);
  writer.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 1 << 30, false);
  std::ofstream(dir + "/marker") << "old";

  ExpectError([&] { writer.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 1 << 30, false); },
              {dir, "exists"});
  EXPECT_TRUE(fs::exists(dir + "/marker"));

  // A write that fails half-way leaves the old folder as it was and no temporary folder.
  ExpectError([&] { writer.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 0, true); },
              {"max shard size"});
  EXPECT_TRUE(fs::exists(dir + "/marker"));
  EXPECT_EQ(ListDir(parent), std::vector<std::string>({"model"}));
  // So does one that fails before writing (a tensor overflowing fp16).
  AwqCheckpointWriter bad;
  BuildModel(qc, &bad);
  Tensor huge(DType::kF32, {4});
  huge.data<float>()[2] = 1e6f;
  bad.AddTensor("model.extra.weight", huge);
  ExpectError([&] { bad.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 1 << 30, true); },
              {"model.extra.weight", "overflows float16", "element 2"});
  EXPECT_TRUE(fs::exists(dir + "/marker"));
  EXPECT_EQ(ListDir(parent), std::vector<std::string>({"model"}));

  // overwrite replaces the whole folder; a trailing slash names the same folder.
  writer.Write(dir + "/", HfConfigToJson(TinyConfig()), qc, nullptr, 1 << 30, true);
  EXPECT_FALSE(fs::exists(dir + "/marker"));
  EXPECT_TRUE(fs::exists(dir + "/config.json"));
  EXPECT_EQ(ListDir(parent), std::vector<std::string>({"model"}));

  // A regular file is never replaced.
  std::ofstream(parent + "/file") << "x";
  ExpectError(
      [&] {
        writer.Write(parent + "/file", HfConfigToJson(TinyConfig()), qc, nullptr, 1 << 30, true);
      },
      {"file", "not a folder"});
}

TEST(AwqCheckpointTest, WriterRejectsWhatTheLayoutCannotHold) {
  const std::string parent = test::MakeTempDir("awq_ckpt");
  const std::string dir = parent + "/bad";
  const std::vector<float> w(128 * 128, 0.01f);
  const auto expect = [&](const QuantizedLinear& q, const std::string& module,
                          const QuantConfig& qc, std::initializer_list<std::string> parts) {
    AwqCheckpointWriter writer;
    writer.AddQuantized(module, q);
    ExpectError(
        [&] { writer.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 1 << 30, false); },
        parts);
    EXPECT_TRUE(ListDir(parent).empty()) << "something was left behind";
  };
  const QuantConfig gemm;
  expect(QuantizeLinear(w.data(), 128, 128, {3, 128, true}), "m.q_proj", gemm,
         {"m.q_proj", "bits 3", "'gemm'", "awqcpp_packed"});
  expect(QuantizeLinear(w.data(), 128, 128, {4, 64, true}), "m.q_proj", gemm,
         {"m.q_proj", "group size 64", "'gemm'"});
  expect(QuantizeLinear(w.data(), 128, 128, {4, 128, false}), "m.q_proj", gemm,
         {"m.q_proj", "zero point off", "zero point on"});
  expect(QuantizeLinear(w.data(), 12, 128, {4, 128, true}), "m.q_proj", gemm,
         {"m.q_proj", "output width 12 is not a multiple of 8"});
  expect(QuantizeLinear(w.data(), 32, 128, {4, 128, true}), "lm_head", gemm,
         {"lm_head", "would not treat this linear as quantized"});
  QuantConfig bad_version;
  bad_version.version = "gemv_fast";
  expect(QuantizeLinear(w.data(), 8, 128, {4, 128, true}), "m.q_proj", bad_version,
         {"version = 'gemv_fast'"});
  QuantConfig gemv;
  gemv.version = kLayoutGemv;
  expect(QuantizeLinear(w.data(), 128, 128, {4, 64, true}), "m.q_proj", gemv,
         {"m.q_proj", "group size 64", "'gemv'"});
  AwqCheckpointWriter twice;
  const QuantizedLinear q = QuantizeLinear(w.data(), 8, 128, {4, 128, true});
  twice.AddQuantized("m.q_proj", q);
  twice.AddQuantized("m.q_proj", q);
  ExpectError(
      [&] { twice.Write(dir, HfConfigToJson(TinyConfig()), gemm, nullptr, 1 << 30, false); },
      {"m.q_proj", "added twice"});
  // An unpackable linear is refused when added.
  QuantizedLinear nine = q;
  nine.params.bits = 9;
  ExpectError([&] { twice.AddQuantized("m.x", nine); }, {"m.x", "bits = 9"});
}

TEST(AwqCheckpointTest, WritesTokenizerFiles) {
  const std::string dir = test::MakeTempDir("awq_ckpt") + "/tok";
  const Tokenizer tok = Tokenizer::FromHfJsonText(
      R"({"model": {"vocab": {"Ġ": 0, "h": 1, "i": 2, "hi": 3}, "merges": [["h", "i"]]},
          "pre_tokenizer": {"type": "ByteLevel"}})");
  const QuantConfig qc;
  AwqCheckpointWriter writer;
  BuildModel(qc, &writer);
  writer.Write(dir, HfConfigToJson(TinyConfig()), qc, &tok, 1 << 30, false);
  const Tokenizer back = Tokenizer::FromHfJson(dir + "/tokenizer.json");
  EXPECT_EQ(back.Encode("hi", false), tok.Encode("hi", false));
}

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(AwqCheckpointTest, ReadsAutoAwqConfigs) {
  const std::string dir = test::MakeTempDir("awq_read");
  EXPECT_FALSE(ReadAwqQuantConfig(dir));  // nothing there
  WriteText(dir + "/config.json", R"({"model_type": "llama", "hidden_size": 8})");
  EXPECT_FALSE(ReadAwqQuantConfig(dir));  // a plain model
  WriteText(dir + "/config.json", R"({"quantization_config": {"quant_method": "gptq",
                                     "bits": 4, "group_size": 128}})");
  EXPECT_FALSE(ReadAwqQuantConfig(dir));  // quantized, but not AWQ

  // As AutoAWQ 0.2.x + transformers save it (Mixtral keeps its router).
  WriteText(dir + "/config.json", R"({"quantization_config": {"bits": 4, "group_size": 64,
      "modules_to_not_convert": ["gate"], "quant_method": "awq", "version": "gemm",
      "zero_point": true}})");
  QuantConfig qc = *ReadAwqQuantConfig(dir);
  EXPECT_EQ(qc.w_bit, 4);
  EXPECT_EQ(qc.q_group_size, 64);
  EXPECT_EQ(qc.modules_to_not_convert, std::vector<std::string>({"gate"}));
  EXPECT_FALSE(qc.ParamsFor("model.layers.0.block_sparse_moe.gate"));

  // Older AutoAWQ: only quant_config.json, upper-case version, AutoAWQ's key names.
  fs::remove(dir + "/config.json");
  WriteText(dir + "/quant_config.json",
            R"({"zero_point": true, "q_group_size": 128, "w_bit": 4, "version": "GEMM"})");
  qc = *ReadAwqQuantConfig(dir);
  EXPECT_EQ(qc.version, "gemm");
  EXPECT_EQ(qc.q_group_size, 128);
  // config.json without quantization_config falls back to quant_config.json too.
  WriteText(dir + "/config.json", R"({"model_type": "llama"})");
  EXPECT_TRUE(ReadAwqQuantConfig(dir));

  const auto expect = [&](const std::string& quant, std::initializer_list<std::string> parts) {
    WriteText(dir + "/config.json", R"({"quantization_config": )" + quant + "}");
    ExpectError([&] { ReadAwqQuantConfig(dir); }, parts);
  };
  expect(R"({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "GEMVFast"})",
         {"config.json", "\"gemvfast\"", "not supported"});
  expect(R"({"quant_method": "awq", "bits": "4", "group_size": 128})",
         {"config.json", "\"bits\"", "\"4\""});
  expect(R"({"quant_method": "awq", "group_size": 128})", {"config.json", "no \"bits\""});
  expect(R"({"quant_method": "awq", "bits": 4, "group_size": 100})",
         {"config.json", "q_group_size = 100"});
  expect(R"({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": "yes"})",
         {"config.json", "zero_point"});
  expect(R"({"quant_method": "awq", "bits": 4, "group_size": 128,
             "modules_to_not_convert": "gate"})",
         {"config.json", "modules_to_not_convert"});
  WriteText(dir + "/config.json", "{not json");
  ExpectError([&] { ReadAwqQuantConfig(dir); }, {"config.json", "not valid JSON"});
}

TEST(AwqCheckpointTest, ReadErrorsNameTheTensor) {
  const std::string dir = test::MakeTempDir("awq_ckpt") + "/m";
  const QuantConfig qc;
  AwqCheckpointWriter writer;
  BuildModel(qc, &writer);
  writer.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 1 << 30, false);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(dir);
  ExpectError([&] { DequantizeAwqWeight(ckpt, "model.layers.0.mlp.nope", qc); },
              {"missing tensor model.layers.0.mlp.nope.qweight"});
  // Reading with the wrong group size is caught by the shapes.
  QuantConfig g64;
  g64.q_group_size = 64;
  ExpectError([&] { DequantizeAwqWeight(ckpt, "model.layers.0.mlp.up_proj", g64); },
              {"model.layers.0.mlp.up_proj.scales", "1 groups", "group size 64"});
}

}  // namespace
}  // namespace awq

namespace awq {
namespace {

QuantizedLinear RandomLinear(int64_t out, int64_t in, int64_t group, bool zp, uint32_t seed) {
  const Tensor w = RandomTensor({out, in}, seed);
  return QuantizeLinear(w.data<float>(), out, in, {4, group, zp});
}

TEST(AwqGemvLayout, WordsZerosAndPaddingAsAutoAwqLaysThemOut) {
  // Inputs 0..7 of row 0 holding codes 0..7 pack to 0x76543210 (sequential nibbles, unlike GEMM's
  // 0x75316420); zeros pack the same way by group; W is rounded up per group size.
  QuantizedLinear q = RandomLinear(3, 256, 32, true, 1);
  for (int k = 0; k < 8; ++k) q.q[k] = static_cast<uint8_t>(k);
  for (int g = 0; g < 8; ++g) q.zeros[g] = static_cast<uint8_t>(15 - g);
  const AwqGemvTensors t = PackAwqGemv(q);
  EXPECT_EQ(static_cast<uint32_t>(t.qweight.data<int32_t>()[0]), 0x76543210u);
  EXPECT_EQ(static_cast<uint32_t>(t.qzeros.data<int32_t>()[0]), 0x89ABCDEFu);
  EXPECT_EQ(t.qweight.shape(), (Shape{3, 32}));
  EXPECT_EQ(t.qzeros.shape(), (Shape{3, 4}));  // ceil(8 / 8) = 1, rounded to a multiple of 4
  EXPECT_EQ(t.scales.shape(), (Shape{3, 32}));
  EXPECT_EQ(t.qzeros.data<int32_t>()[1], 0);  // padding
  EXPECT_EQ(t.scales.data<uint16_t>()[8], 0);
  EXPECT_EQ(AwqGemvZerosWidth(4096, 128), 4);
  EXPECT_EQ(AwqGemvZerosWidth(576, 64), 2);      // 9 groups -> 2 words
  EXPECT_EQ(AwqGemvZerosWidth(11008, 128), 11);  // 86 groups -> 11 words
  EXPECT_EQ(AwqGemvZerosWidth(576, -1), 1);
}

TEST(AwqGemvLayout, RoundTripsEveryGroupSize) {
  uint32_t seed = 10;
  for (const int64_t g : {32, 64, 128, -1}) {
    for (const bool zp : {true, false}) {
      const QuantizedLinear q = RandomLinear(12, 384, g, zp, seed++);
      const AwqGemvTensors t = PackAwqGemv(q);
      const QuantizedLinear r = UnpackAwqGemv(t.qweight, t.qzeros, t.scales, 4, g, "layer", zp);
      EXPECT_EQ(r.q, q.q) << g;
      EXPECT_EQ(r.scales, q.scales) << g;
      EXPECT_EQ(r.zeros, q.zeros) << g;
      EXPECT_EQ(r.out, 12);
      EXPECT_EQ(r.in, 384);
    }
  }
  const QuantizedLinear q = RandomLinear(8, 64, 32, true, 3);
  const AwqGemvTensors t = PackAwqGemv(q);
  test::ExpectError([&] { UnpackAwqGemv(t.qweight, t.qzeros, t.scales, 3, 32, "m.q_proj"); },
                    {"m.q_proj", "4-bit"});
  const Tensor short_zeros(DType::kI32, {4, 1});
  test::ExpectError([&] { UnpackAwqGemv(t.qweight, short_zeros, t.scales, 4, 32, "m.q_proj"); },
                    {"m.q_proj.qzeros", "[4, 1]"});
  test::ExpectError([&] { UnpackAwqGemv(t.qweight, t.qzeros, t.scales, 4, 48, "m.q_proj"); },
                    {"group size 48"});
  QuantizedLinear three_bit = q;
  three_bit.params.bits = 3;
  test::ExpectError([&] { PackAwqGemv(three_bit); }, {"4-bit"});
}

TEST(AwqGemvLayout, CheckpointReadsBackLikeGemm) {
  const std::string dir = test::MakeTempDir("awq_ckpt") + "/gemv";
  QuantConfig qc;
  qc.q_group_size = 64;
  qc.version = kLayoutGemv;
  AwqCheckpointWriter writer;
  const TinyModel m = BuildModel(qc, &writer);
  writer.Write(dir, HfConfigToJson(TinyConfig()), qc, nullptr, 1 << 30, false);
  const QuantConfig read = *ReadAwqQuantConfig(dir);
  EXPECT_EQ(read.version, "gemv");
  ExpectReadsBack(dir, m, DType::kF16);
}

}  // namespace
}  // namespace awq
