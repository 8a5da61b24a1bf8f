// Tests of the GGUF reader and writer: a file written by gguf-py (every metadata type, nested
// arrays, alignment 64), the real SmolLM2 model against facts read with gguf-py's GGUFReader
// (tests/data/gguf_model_golden.json, made by tools/make_gguf_golden.py), writer round trips,
// and malformed files, each of which must give an awq::Error naming the file, field and value.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "awq/gguf.h"
#include "awq/half.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace awq {
namespace {

// gtest without gmock: substring checks that print both strings on failure.
::testing::AssertionResult Contains(const std::string& s, const std::string& sub) {
  if (s.find(sub) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << s << "\" does not contain \"" << sub << "\"";
}
#define EXPECT_CONTAINS(s, sub) EXPECT_TRUE(Contains((s), (sub)))
#define ASSERT_CONTAINS(s, sub) ASSERT_TRUE(Contains((s), (sub)))

constexpr const char* kSrc = "mem.gguf";

// The message of the awq::Error that `fn` throws, or a marker when it throws none.
std::string ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

std::string ParseError(const std::string& image) {
  return ErrorOf(
      [&] { GgufFile::Parse(reinterpret_cast<const uint8_t*>(image.data()), image.size(), kSrc); });
}

GgufFile ParseImage(const std::string& image) {
  return GgufFile::Parse(reinterpret_cast<const uint8_t*>(image.data()), image.size(), kSrc);
}

std::string F32Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// Little-endian builder for hand-made headers.
struct Image {
  std::string s;
  template <class T>
  Image& Put(T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Image& Str(const std::string& x) {
    Put<uint64_t>(x.size());
    s += x;
    return *this;
  }
  Image& Header(uint64_t n_tensors, uint64_t n_kv) {
    return Put<uint32_t>(0x46554747).Put<uint32_t>(3).Put<uint64_t>(n_tensors).Put<uint64_t>(n_kv);
  }
};

// The byte position of a tensor's offset field in a serialized image.
size_t OffsetFieldPos(const std::string& image, const std::string& name, int n_dims) {
  std::string needle(8, '\0');
  const uint64_t len = name.size();
  std::memcpy(needle.data(), &len, 8);
  needle += name;
  const size_t at = image.find(needle);
  EXPECT_NE(at, std::string::npos) << name;
  return at + needle.size() + 4 + 8 * n_dims + 4;
}

void PatchU64(std::string* image, size_t pos, uint64_t v) { std::memcpy(&(*image)[pos], &v, 8); }

// A small valid file with a few metadata types and three tensors.
GgufWriter SmallWriter() {
  GgufWriter w;
  w.AddMetadata("general.architecture", GgufString("llama"));
  w.AddMetadata("llama.block_count", GgufU32(2));
  w.AddMetadata("tokenizer.ggml.tokens", GgufStringArray({"a", "b", "<s>"}));
  w.AddTensor("a.weight", GgmlType::kF32, {4, 2}, F32Bytes({1, 2, 3, 4, 5, 6, 7, 8}));
  w.AddTensor("b.weight", GgmlType::kF16, {3}, std::string(6, '\x3c'));
  std::string q8(34, '\0');
  const uint16_t one = Fp32ToFp16(1.0f);
  std::memcpy(q8.data(), &one, 2);
  for (int j = 0; j < 32; ++j) q8[2 + j] = static_cast<char>(j - 16);
  w.AddTensor("c.weight", GgmlType::kQ8_0, {32, 1}, q8);
  return w;
}

// --- A file written by an independent implementation (gguf-py) -----------------------------

TEST(Gguf, ReadsEveryValueTypeWrittenByGgufPy) {
  const std::string path = test::DataPath("gguf_quants_golden.gguf");
  const GgufFile f = GgufFile::Open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.metadata().size(), 20u);
  EXPECT_EQ(f.GetString("golden.made_by"), "tools/make_gguf_golden.py");
  EXPECT_EQ(f.metadata()[0].first, "general.architecture");  // file order is kept
  EXPECT_EQ(f.GetString("general.architecture"), "golden");

  EXPECT_EQ(f.Find("t.u8")->type, GgufType::kUint8);
  EXPECT_EQ(f.GetUint("t.u8"), 200u);
  EXPECT_EQ(f.GetInt("t.i8"), -100);
  EXPECT_EQ(f.GetUint("t.u16"), 60000u);
  EXPECT_EQ(f.GetInt("t.i16"), -30000);
  EXPECT_EQ(f.GetUint("t.u32"), 4000000000u);
  EXPECT_EQ(f.GetInt("t.i32"), -2000000000);
  EXPECT_EQ(f.GetUint("t.u64"), (uint64_t{1} << 63) + 5);
  EXPECT_EQ(f.GetInt("t.i64"), -(int64_t{1} << 62) - 3);
  EXPECT_EQ(f.Find("t.f32")->type, GgufType::kFloat32);
  EXPECT_EQ(f.GetFloat("t.f32"), 0.15625);
  EXPECT_EQ(f.GetFloat("t.f64"), 1.0 / 3.0);
  EXPECT_EQ(f.GetFloat("t.u32"), 4e9);  // integers convert
  EXPECT_TRUE(f.GetBool("t.bool", false));
  EXPECT_EQ(f.GetString("t.str"), "h\xc3\xa9llo \xe2\x9c\x93");

  EXPECT_EQ(f.GetStringArray("t.arr_str"), (std::vector<std::string>{"a", "", "bc"}));
  EXPECT_EQ(f.GetIntArray("t.arr_u8"), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_EQ(f.GetIntArray("t.arr_i64"), (std::vector<int64_t>{-1, int64_t{1} << 40}));
  EXPECT_EQ(f.GetFloatArray("t.arr_f32"), (std::vector<double>{0.5, -2.25}));
  EXPECT_EQ(f.GetFloatArray("t.arr_u8"), (std::vector<double>{1, 2, 255}));

  const GgufValue* nested = f.Find("t.nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->type, GgufType::kArray);
  EXPECT_EQ(nested->array_type, GgufType::kArray);
  ASSERT_EQ(nested->array.size(), 3u);
  EXPECT_EQ(nested->array[0].array_type, GgufType::kInt32);
  ASSERT_EQ(nested->array[2].array.size(), 3u);
  EXPECT_EQ(nested->array[2].array[2].i64, 6);
  EXPECT_EQ(nested->array[1].array[0].i64, 3);

  ASSERT_EQ(f.tensors().size(), 26u);
  for (const GgufTensorInfo& t : f.tensors()) {
    EXPECT_EQ(t.offset % 64, 0u) << t.name;
    EXPECT_EQ(t.shape(), (Shape{2, 256})) << t.name;
  }
  const Tensor got = f.ReadF32("f32.raw");
  const Tensor want = f.ReadF32("f32.expected");
  EXPECT_EQ(got.shape(), (Shape{2, 256}));
  EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0);
}

TEST(Gguf, GettersReportMissingKeysAndWrongTypes) {
  const std::string path = test::DataPath("gguf_quants_golden.gguf");
  const GgufFile f = GgufFile::Open(path);
  std::string e = ErrorOf([&] { f.GetString("no.such.key"); });
  EXPECT_CONTAINS(e, path);
  EXPECT_CONTAINS(e, "no.such.key");
  EXPECT_CONTAINS(e, "missing");
  e = ErrorOf([&] { f.GetString("t.u32"); });
  EXPECT_CONTAINS(e, "t.u32");
  EXPECT_CONTAINS(e, "uint32");
  e = ErrorOf([&] { f.GetUint("t.i8"); });
  EXPECT_CONTAINS(e, "t.i8");
  EXPECT_CONTAINS(e, "-100");
  e = ErrorOf([&] { f.GetInt("t.u64"); });
  EXPECT_CONTAINS(e, "9223372036854775813");
  EXPECT_CONTAINS(ErrorOf([&] { f.GetUint("t.str"); }), "string");
  EXPECT_CONTAINS(ErrorOf([&] { f.GetBool("t.u8", true); }), "t.u8");
  EXPECT_CONTAINS(ErrorOf([&] { f.GetStringArray("t.arr_u8"); }), "array of uint8");
  EXPECT_CONTAINS(ErrorOf([&] { f.GetIntArray("t.arr_str"); }), "t.arr_str");
  EXPECT_CONTAINS(ErrorOf([&] { f.GetFloatArray("t.nested"); }), "array of array");
  EXPECT_CONTAINS(ErrorOf([&] { f.GetIntArray("t.arr_i64"); }), "<no error>");
  // Fallbacks apply only to missing keys; a wrong type still throws.
  EXPECT_EQ(f.GetString("no.key", "x"), "x");
  EXPECT_EQ(f.GetUint("no.key", 7), 7u);
  EXPECT_EQ(f.GetInt("no.key", -7), -7);
  EXPECT_EQ(f.GetFloat("no.key", 2.5), 2.5);
  EXPECT_FALSE(f.GetBool("no.key", false));
  EXPECT_EQ(f.GetUint("t.u8", 7), 200u);
  EXPECT_CONTAINS(ErrorOf([&] { f.GetString("t.u8", "x"); }), "t.u8");
  EXPECT_CONTAINS(ErrorOf([&] { f.ReadF32("nope.weight"); }), "'nope.weight'");
  EXPECT_EQ(f.FindTensor("nope.weight"), nullptr);
}

// --- The real model against gguf-py's GGUFReader -------------------------------------------

TEST(Gguf, RealModelMatchesGgufPy) {
  std::ifstream in(test::DataPath("gguf_model_golden.json"));
  ASSERT_TRUE(in.good());
  const nlohmann::json g = nlohmann::json::parse(in);
  const GgufFile f = GgufFile::Open(test::ModelPath());

  EXPECT_EQ(f.version(), g["version"].get<uint32_t>());
  EXPECT_EQ(f.alignment(), g["alignment"].get<uint64_t>());
  EXPECT_EQ(f.tensors().size(), g["tensor_count"].get<size_t>());
  EXPECT_EQ(f.metadata().size(), g["kv_count"].get<size_t>());
  EXPECT_EQ(f.GetString("general.architecture"), g["architecture"].get<std::string>());
  EXPECT_EQ(f.GetUint("llama.block_count"), g["block_count"].get<uint64_t>());
  EXPECT_EQ(f.GetUint("llama.embedding_length"), g["embedding_length"].get<uint64_t>());
  EXPECT_EQ(f.GetFloat("llama.rope.freq_base"), g["rope_freq_base"].get<double>());
  EXPECT_EQ(f.GetFloat("llama.attention.layer_norm_rms_epsilon"), g["rms_epsilon"].get<double>());
  EXPECT_EQ(f.GetBool("tokenizer.ggml.add_bos_token", true), g["add_bos_token"].get<bool>());
  EXPECT_EQ(f.GetString("tokenizer.ggml.pre"), g["pre"].get<std::string>());

  const std::vector<std::string> tokens = f.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), g["vocab_size"].get<size_t>());
  for (const auto& t : g["tokens"]) EXPECT_EQ(tokens.at(t[0].get<size_t>()), t[1]);
  const std::vector<std::string> merges = f.GetStringArray("tokenizer.ggml.merges");
  ASSERT_EQ(merges.size(), g["merges_count"].get<size_t>());
  for (const auto& m : g["merges"]) EXPECT_EQ(merges.at(m[0].get<size_t>()), m[1]);
  const std::vector<int64_t> types = f.GetIntArray("tokenizer.ggml.token_type");
  for (const auto& t : g["token_type"]) EXPECT_EQ(types.at(t[0].get<size_t>()), t[1]);

  for (const auto& gt : g["tensors"]) {
    const std::string name = gt["name"];
    SCOPED_TRACE(name);
    const GgufTensorInfo* info = f.FindTensor(name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(static_cast<uint32_t>(info->type), gt["type"].get<uint32_t>());
    EXPECT_EQ(info->ne, gt["ne"].get<std::vector<int64_t>>());
    EXPECT_EQ(info->offset, gt["offset"].get<uint64_t>());
    EXPECT_EQ(info->nbytes, gt["nbytes"].get<uint64_t>());
    const Tensor t = f.ReadF32(*info);
    ASSERT_EQ(t.shape(), gt["shape"].get<Shape>());
    const float* x = t.data<float>();
    double sum = 0, sum_sq = 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      sum += x[i];
      sum_sq += double{x[i]} * x[i];
    }
    // The values are bit-exact; only the summation order differs from numpy's pairwise sum.
    // A sequential double sum of n terms is off by at most n * eps * sum|x|, and
    // sum|x| <= sqrt(n * sum_sq) (Cauchy-Schwarz).
    const double n = static_cast<double>(t.numel());
    const double want_sq = gt["sum_sq"].get<double>();
    const double tol = n * std::numeric_limits<double>::epsilon() * std::sqrt(n * want_sq);
    EXPECT_NEAR(sum, gt["sum"].get<double>(), tol);
    EXPECT_NEAR(sum_sq, want_sq, n * std::numeric_limits<double>::epsilon() * want_sq);
    for (const auto& s : gt["samples"]) {
      EXPECT_EQ(x[s[0].get<int64_t>()], s[1].get<float>()) << "element " << s[0];
    }
  }
}

TEST(Gguf, DequantizesTheWholeModel) {
  const GgufFile f = GgufFile::Open(test::ModelPath());
  const auto start = std::chrono::steady_clock::now();
  int64_t q4_1_elems = 0;
  for (const GgufTensorInfo& t : f.tensors()) {
    if (t.type != GgmlType::kQ4_1) continue;
    const Tensor x = f.ReadF32(t);
    ASSERT_EQ(x.shape(), t.shape());
    q4_1_elems += x.numel();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("dequantized %lld Q4_1 weights in %.3f s\n", static_cast<long long>(q4_1_elems),
              seconds);
  EXPECT_GT(q4_1_elems, 60'000'000);
  // Its speed is measured in bench/parse_bench.cc (gguf/dequant_q4_1 against a copy of the same
  // floats in the same run), not asserted here.
}

// --- Writer round trips --------------------------------------------------------------------

TEST(GgufWriter, RoundTripsEveryValueTypeAndTensor) {
  GgufWriter w;
  GgufValue u8, i8, u16, i16, u64, i64, f64;
  u8.type = GgufType::kUint8, u8.u64 = 255;
  i8.type = GgufType::kInt8, i8.i64 = -128;
  u16.type = GgufType::kUint16, u16.u64 = 65535;
  i16.type = GgufType::kInt16, i16.i64 = -32768;
  u64.type = GgufType::kUint64, u64.u64 = std::numeric_limits<uint64_t>::max();
  i64.type = GgufType::kInt64, i64.i64 = std::numeric_limits<int64_t>::min();
  f64.type = GgufType::kFloat64, f64.f64 = -1e300;
  GgufValue empty;
  empty.type = GgufType::kArray;
  empty.array_type = GgufType::kFloat64;
  GgufValue nested;
  nested.type = GgufType::kArray;
  nested.array_type = GgufType::kArray;
  nested.array = {GgufStringArray({"x", "y"}), GgufStringArray({}), GgufStringArray({"z"})};
  w.AddMetadata("u8", u8);
  w.AddMetadata("i8", i8);
  w.AddMetadata("u16", u16);
  w.AddMetadata("i16", i16);
  w.AddMetadata("u32", GgufU32(4294967295u));
  w.AddMetadata("i32", GgufI32(-2147483647 - 1));
  w.AddMetadata("u64", u64);
  w.AddMetadata("i64", i64);
  w.AddMetadata("f32", GgufF32(-0.1f));
  w.AddMetadata("f64", f64);
  w.AddMetadata("bool", GgufBool(false));
  w.AddMetadata("str", GgufString(std::string("nul\0inside", 10)));
  w.AddMetadata("empty", empty);
  w.AddMetadata("nested", nested);
  w.AddMetadata("i32s", GgufI32Array({-1, 0, 1}));
  w.AddMetadata("f32s", GgufF32Array({1.5f, -0.0f}));
  w.AddTensor("t.f32", GgmlType::kF32, {3, 1, 1, 2}, F32Bytes({1, 2, 3, 4, 5, 6}));
  w.AddTensor("t.unknown", static_cast<GgmlType>(16), {256}, std::string(66, '\x11'));
  w.AddTensor("t.bf16", GgmlType::kBF16, {2}, std::string("\x80\x3f\x00\xc0", 4));

  const std::string dir = test::MakeTempDir("gguf_writer");
  const std::string path = dir + "/round.gguf";
  w.WriteFile(path, 128);
  const GgufFile f = GgufFile::Open(path);
  EXPECT_EQ(f.alignment(), 128u);
  EXPECT_EQ(f.GetUint("general.alignment"), 128u);  // added by the writer
  EXPECT_EQ(f.metadata().size(), 17u);
  EXPECT_EQ(f.GetUint("u8"), 255u);
  EXPECT_EQ(f.GetInt("i8"), -128);
  EXPECT_EQ(f.GetUint("u16"), 65535u);
  EXPECT_EQ(f.GetInt("i16"), -32768);
  EXPECT_EQ(f.GetUint("u32"), 4294967295u);
  EXPECT_EQ(f.GetInt("i32"), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(f.GetUint("u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f.GetInt("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.GetFloat("f32"), static_cast<double>(-0.1f));
  EXPECT_EQ(f.GetFloat("f64"), -1e300);
  EXPECT_FALSE(f.GetBool("bool", true));
  EXPECT_EQ(f.GetString("str"), std::string("nul\0inside", 10));
  EXPECT_TRUE(f.GetFloatArray("empty").empty());
  const GgufValue* n = f.Find("nested");
  ASSERT_NE(n, nullptr);
  ASSERT_EQ(n->array.size(), 3u);
  EXPECT_EQ(n->array[0].array[1].str, "y");
  EXPECT_TRUE(n->array[1].array.empty());
  EXPECT_EQ(n->array[2].array_type, GgufType::kString);
  EXPECT_EQ(f.GetIntArray("i32s"), (std::vector<int64_t>{-1, 0, 1}));
  const std::vector<double> fs = f.GetFloatArray("f32s");
  ASSERT_EQ(fs.size(), 2u);
  EXPECT_TRUE(fs[1] == 0.0 && std::signbit(fs[1]));

  ASSERT_EQ(f.tensors().size(), 3u);
  const GgufTensorInfo& a = f.tensors()[0];
  EXPECT_EQ(a.ne, (std::vector<int64_t>{3, 1, 1, 2}));
  EXPECT_EQ(a.shape(), (Shape{2, 1, 1, 3}));
  EXPECT_EQ(a.nbytes, 24u);
  EXPECT_EQ(f.tensors()[1].offset, 128u);
  EXPECT_EQ(f.tensors()[2].offset, 256u);
  const Tensor t = f.ReadF32("t.f32");
  EXPECT_EQ(t.shape(), (Shape{2, 1, 1, 3}));
  EXPECT_EQ(t.data<float>()[5], 6.0f);
  const Tensor bf = f.ReadF32("t.bf16");
  EXPECT_EQ(bf.data<float>()[0], 1.0f);
  EXPECT_EQ(bf.data<float>()[1], -2.0f);
  // A type ggml knows but awq.cpp cannot dequantize: the file loads, reading it fails.
  const std::string e = ErrorOf([&] { f.ReadF32("t.unknown"); });
  EXPECT_CONTAINS(e, path);
  EXPECT_CONTAINS(e, "'t.unknown'");
  EXPECT_CONTAINS(e, "IQ2_XXS");
  EXPECT_EQ(std::memcmp(f.TensorData(f.tensors()[1]), std::string(66, '\x11').data(), 66), 0);
}

TEST(GgufWriter, ImageIsByteIdenticalAcrossSerializations) {
  const GgufWriter w = SmallWriter();
  const std::string a = w.Serialize();
  EXPECT_EQ(a, w.Serialize());
  EXPECT_EQ(a.size() % 32, 0u);
  const GgufFile f = ParseImage(a);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_FALSE(f.Has("general.alignment"));
  const Tensor c = f.ReadF32("c.weight");
  EXPECT_EQ(c.shape(), (Shape{1, 32}));
  for (int j = 0; j < 32; ++j) EXPECT_EQ(c.data<float>()[j], j - 16.0f);
}

TEST(GgufWriter, RejectsBytesThatDoNotMatchTheType) {
  GgufWriter w;
  const std::string e = ErrorOf([&] { w.AddTensor("x", GgmlType::kQ4_0, {32}, "short"); });
  EXPECT_CONTAINS(e, "'x'");
  EXPECT_CONTAINS(e, "Q4_0");
  EXPECT_CONTAINS(ErrorOf([&] { w.AddTensor("y", GgmlType::kQ4_0, {16}, std::string(9, 0)); }),
                  "ne[0] 16");
}

// --- Malformed input -----------------------------------------------------------------------

TEST(GgufMalformed, EveryTruncationIsAnError) {
  const std::string image = SmallWriter().Serialize();
  const GgufFile f = ParseImage(image);
  const GgufTensorInfo* last = f.FindTensor("c.weight");
  const size_t data_end = static_cast<size_t>(f.TensorData(*last) + last->nbytes -
                                              reinterpret_cast<const uint8_t*>(image.data()));
  for (size_t n = 0; n < data_end; ++n) {
    const std::string e = ParseError(image.substr(0, n));
    ASSERT_CONTAINS(e, std::string(kSrc) + ": ") << "truncated to " << n;
  }
  // Padding after the last tensor is not needed.
  EXPECT_EQ(ParseImage(image.substr(0, data_end)).tensors().size(), 3u);
  // Some truncation points name the field they cut.
  EXPECT_CONTAINS(ParseError(image.substr(0, 2)), "magic");
  EXPECT_CONTAINS(ParseError(image.substr(0, 6)), "version");
  EXPECT_CONTAINS(ParseError(image.substr(0, image.find("b.weight") + 10)),
                  "tensor 'b.weight' n_dims: needs 4 bytes");
  EXPECT_CONTAINS(ParseError(image.substr(0, data_end - 1)), "tensor 'c.weight' offset");
}

TEST(GgufMalformed, BadMagicAndVersions) {
  std::string image = SmallWriter().Serialize();
  std::string bad = image;
  bad[0] = 'X';
  std::string e = ParseError(bad);
  EXPECT_CONTAINS(e, "mem.gguf: magic");
  EXPECT_CONTAINS(e, "0x46554758");
  for (uint32_t v : {1u, 4u, 0u, 0x03000000u}) {
    bad = image;
    std::memcpy(&bad[4], &v, 4);
    e = ParseError(bad);
    EXPECT_CONTAINS(e, "mem.gguf: version: " + std::to_string(v));
  }
  bad = image;
  const uint32_t v1 = 1;
  std::memcpy(&bad[4], &v1, 4);
  EXPECT_CONTAINS(ParseError(bad), "v1");
  const uint32_t big = 0x03000000u;
  std::memcpy(&bad[4], &big, 4);
  EXPECT_CONTAINS(ParseError(bad), "big-endian");
  // Version 2 has the same layout and is accepted.
  bad = image;
  const uint32_t v2 = 2;
  std::memcpy(&bad[4], &v2, 4);
  EXPECT_EQ(ParseImage(bad).version(), 2u);
}

TEST(GgufMalformed, HugeCountsAndLengthsDoNotAllocate) {
  const uint64_t huge = uint64_t{1} << 60;
  // Tensor and metadata counts.
  EXPECT_CONTAINS(ParseError(Image().Header(huge, 0).s),
                  "mem.gguf: tensor count: 1152921504606846976");
  EXPECT_CONTAINS(ParseError(Image().Header(0, huge).s),
                  "mem.gguf: metadata count: 1152921504606846976");
  // A key length.
  EXPECT_CONTAINS(ParseError(Image().Header(0, 1).Put<uint64_t>(huge).Put<uint64_t>(0).s),
                  "metadata #0 key length: 1152921504606846976");
  // A string value length.
  Image s;
  s.Header(0, 1).Str("k").Put<uint32_t>(8).Put<uint64_t>(huge).Put<uint64_t>(0);
  EXPECT_CONTAINS(ParseError(s.s), "metadata 'k' length: 1152921504606846976");
  // An array of 2^60 strings.
  Image a;
  a.Header(0, 1).Str("arr").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(huge);
  a.Str("x");
  EXPECT_CONTAINS(ParseError(a.s), "metadata 'arr' element count: 1152921504606846976");
  // A string element whose length runs past the end, and one cut off before its length.
  Image e;
  e.Header(0, 1).Str("arr").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(2);
  e.Str("x").Put<uint64_t>(huge).Put<uint64_t>(0);
  EXPECT_CONTAINS(ParseError(e.s), "metadata 'arr'[1] length: 1152921504606846976 is past the end");
  Image c;
  c.Header(0, 1).Str("arr").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(2);
  c.Str("0123456789");
  EXPECT_CONTAINS(ParseError(c.s), "metadata 'arr'[1] length: needs 8 bytes");
  // An array of 2^60 nested arrays.
  Image n;
  n.Header(0, 1).Str("nest").Put<uint32_t>(9).Put<uint32_t>(9).Put<uint64_t>(huge);
  EXPECT_CONTAINS(ParseError(n.s), "metadata 'nest' element count");
  // A tensor name length.
  EXPECT_CONTAINS(ParseError(Image()
                                 .Header(1, 0)
                                 .Put<uint64_t>(huge)
                                 .Put<uint32_t>(1)
                                 .Put<uint64_t>(1)
                                 .Put<uint32_t>(0)
                                 .Put<uint64_t>(0)
                                 .s),
                  "tensor #0 name length: 1152921504606846976");
}

TEST(GgufMalformed, UnknownValueTypes) {
  Image s;
  s.Header(0, 1).Str("general.name").Put<uint32_t>(13).Put<uint64_t>(0);
  std::string e = ParseError(s.s);
  EXPECT_CONTAINS(e, "mem.gguf: metadata 'general.name' type: unknown value type 13");
  Image a;
  a.Header(0, 1).Str("arr").Put<uint32_t>(9).Put<uint32_t>(99).Put<uint64_t>(1).Put<uint64_t>(0);
  e = ParseError(a.s);
  EXPECT_CONTAINS(e, "metadata 'arr' element type: unknown value type 99");
}

TEST(GgufMalformed, DeeplyNestedArraysAreRejected) {
  Image s;
  s.Header(0, 1).Str("deep").Put<uint32_t>(9);
  for (int i = 0; i < 100; ++i) s.Put<uint32_t>(9).Put<uint64_t>(1);
  s.Put<uint32_t>(0).Put<uint64_t>(0);
  EXPECT_CONTAINS(ParseError(s.s), "metadata 'deep");
  EXPECT_CONTAINS(ParseError(s.s), "nested 9 deep");
}

TEST(GgufMalformed, DuplicateKeysAndTensorNames) {
  GgufWriter w = SmallWriter();
  w.AddMetadata("llama.block_count", GgufU32(3));
  EXPECT_CONTAINS(ParseError(w.Serialize()),
                  "mem.gguf: metadata 'llama.block_count': duplicate key");
  GgufWriter t = SmallWriter();
  t.AddTensor("a.weight", GgmlType::kF32, {1}, F32Bytes({0}));
  EXPECT_CONTAINS(ParseError(t.Serialize()),
                  "mem.gguf: tensor 'a.weight' name: duplicate tensor name");
}

TEST(GgufMalformed, BadDimensions) {
  // Hand-built tensor entries: name, n_dims, ne..., type F32, offset 0, then 64 data bytes.
  auto one_tensor = [](uint32_t n_dims, std::vector<uint64_t> ne, uint32_t type) {
    Image im;
    im.Header(1, 0).Str("w").Put<uint32_t>(n_dims);
    for (uint64_t d : ne) im.Put<uint64_t>(d);
    im.Put<uint32_t>(type).Put<uint64_t>(0);
    while (im.s.size() % 32) im.s.push_back('\0');
    im.s.append(64, '\0');
    return im.s;
  };
  EXPECT_EQ(ParseImage(one_tensor(2, {4, 4}, 0)).tensors()[0].nbytes, 64u);
  EXPECT_CONTAINS(ParseError(one_tensor(5, {1, 1, 1, 1, 1}, 0)),
                  "mem.gguf: tensor 'w' n_dims: 5 is out of range [1, 4]");
  EXPECT_CONTAINS(ParseError(one_tensor(0, {}, 0)), "tensor 'w' n_dims: 0");
  EXPECT_CONTAINS(ParseError(one_tensor(2, {4, 0}, 0)),
                  "tensor 'w' ne[1]: 0 is not a positive dimension");
  EXPECT_CONTAINS(ParseError(one_tensor(1, {uint64_t{1} << 63}, 0)),
                  "tensor 'w' ne[0]: 9223372036854775808");
  EXPECT_CONTAINS(ParseError(one_tensor(3, {1u << 31, 1u << 31, 1u << 31}, 0)),
                  "tensor 'w' ne[2]: 2147483648 makes the element count overflow");
  // 2^62 F32 elements fit in int64 but their 2^64 bytes do not fit in uint64.
  EXPECT_CONTAINS(ParseError(one_tensor(2, {1u << 31, 1u << 31}, 0)),
                  "tensor 'w' size: the byte count overflows");
  // 2^61 elements: the byte count fits, the file does not hold it.
  EXPECT_CONTAINS(ParseError(one_tensor(2, {1u << 31, 1u << 30}, 0)),
                  "tensor 'w' offset: 0 + 9223372036854775808 bytes is past the end of the data "
                  "section (64 bytes)");
  EXPECT_CONTAINS(ParseError(one_tensor(1, {16}, 2)),
                  "tensor 'w' ne[0]: 16 is not a multiple of the Q4_0 block size 32");
  EXPECT_CONTAINS(ParseError(one_tensor(1, {16}, 99)),
                  "mem.gguf: tensor 'w' type: 99 is not a ggml tensor type");
}

TEST(GgufMalformed, BadOffsets) {
  const std::string image = SmallWriter().Serialize();
  // Misaligned.
  std::string bad = image;
  PatchU64(&bad, OffsetFieldPos(bad, "b.weight", 1), 33);
  EXPECT_CONTAINS(ParseError(bad),
                  "mem.gguf: tensor 'b.weight' offset: 33 is not a multiple of the "
                  "alignment 32");
  // Past the end of the data section.
  bad = image;
  PatchU64(&bad, OffsetFieldPos(bad, "c.weight", 2), 1 << 20);
  EXPECT_CONTAINS(ParseError(bad), "tensor 'c.weight' offset: 1048576 + 34 bytes is past");
  // An offset so large that offset + size wraps around.
  bad = image;
  PatchU64(&bad, OffsetFieldPos(bad, "c.weight", 2), ~uint64_t{31});
  EXPECT_CONTAINS(ParseError(bad), "tensor 'c.weight' offset: 18446744073709551584");
  // Overlapping another tensor.
  bad = image;
  PatchU64(&bad, OffsetFieldPos(bad, "c.weight", 2), 0);
  const std::string e = ParseError(bad);
  EXPECT_CONTAINS(e, "mem.gguf: tensor '");
  EXPECT_CONTAINS(e, "overlaps tensor");
}

TEST(GgufMalformed, BadAlignmentKey) {
  for (uint32_t a : {0u, 3u, 48u}) {
    GgufWriter w;
    w.AddMetadata("general.alignment", GgufU32(a));
    EXPECT_CONTAINS(ParseError(w.Serialize()), "mem.gguf: metadata 'general.alignment': " +
                                                   std::to_string(a) + " is not a power of two");
  }
  GgufWriter w;
  w.AddMetadata("general.alignment", GgufString("32"));
  EXPECT_CONTAINS(ParseError(w.Serialize()),
                  "metadata 'general.alignment': has type string, expected uint32");
}

TEST(GgufMalformed, OpenNamesThePath) {
  const std::string dir = test::MakeTempDir("gguf_bad");
  const std::string path = dir + "/bad.gguf";
  const std::string junk = "not a gguf file at all";
  WriteFileAtomic(path, junk.data(), junk.size());
  EXPECT_CONTAINS(ErrorOf([&] { GgufFile::Open(path); }), path + ": magic");
  EXPECT_CONTAINS(ErrorOf([&] { GgufFile::Open(dir + "/missing.gguf"); }), "missing.gguf");
}

// --- Fuzz seeds ----------------------------------------------------------------------------

// The seeds in fuzz/seeds/gguf_fuzz/ are made by this function; the test below keeps the
// committed files equal to its output (AWQ_UPDATE_FUZZ_SEEDS=1 rewrites them).
std::vector<std::pair<std::string, std::string>> FuzzSeeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  seeds.emplace_back("small.gguf", SmallWriter().Serialize());

  // Metadata of every type, nested arrays, and a few legacy-quant tensors at alignment 64.
  GgufWriter m;
  GgufValue u8, i16, u64, f64, nested;
  u8.type = GgufType::kUint8, u8.u64 = 7;
  i16.type = GgufType::kInt16, i16.i64 = -5;
  u64.type = GgufType::kUint64, u64.u64 = 1234567;
  f64.type = GgufType::kFloat64, f64.f64 = 0.5;
  nested.type = GgufType::kArray;
  nested.array_type = GgufType::kArray;
  nested.array = {GgufI32Array({1, 2}), GgufI32Array({3})};
  m.AddMetadata("general.architecture", GgufString("llama"));
  m.AddMetadata("a.u8", u8);
  m.AddMetadata("a.i16", i16);
  m.AddMetadata("a.u64", u64);
  m.AddMetadata("a.f64", f64);
  m.AddMetadata("a.f32", GgufF32(1e-5f));
  m.AddMetadata("a.bool", GgufBool(true));
  m.AddMetadata("a.nested", nested);
  m.AddMetadata("a.f32s", GgufF32Array({0.25f, -1.0f}));
  std::string legacy;
  for (int i = 0; i < 24 * 2; ++i) legacy.push_back(static_cast<char>(i * 37 + 5));
  std::memcpy(legacy.data(), "\x00\x38\x00\xb8", 4);  // d = 0.5, m = -0.5 (fp16)
  m.AddTensor("q5_1", GgmlType::kQ5_1, {32, 2}, legacy);
  m.AddTensor("q5_0", GgmlType::kQ5_0, {32}, legacy.substr(0, 22));
  m.AddTensor("q4_0", GgmlType::kQ4_0, {32}, legacy.substr(0, 18));
  m.AddTensor("q4_1", GgmlType::kQ4_1, {32}, legacy.substr(0, 20));
  seeds.emplace_back("metadata_legacy.gguf", m.Serialize(64));

  // One super-block of each K type, with finite fp16 scales.
  GgufWriter k;
  auto kblock = [](size_t bytes, std::vector<size_t> half_fields) {
    std::string b;
    for (size_t i = 0; i < bytes; ++i) b.push_back(static_cast<char>(i * 91 + 13));
    for (size_t at : half_fields) std::memcpy(&b[at], "\x66\x2e", 2);  // 0.1 as fp16
    return b;
  };
  k.AddTensor("q2_k", GgmlType::kQ2_K, {256}, kblock(84, {80, 82}));
  k.AddTensor("q3_k", GgmlType::kQ3_K, {256}, kblock(110, {108}));
  k.AddTensor("q4_k", GgmlType::kQ4_K, {256}, kblock(144, {0, 2}));
  k.AddTensor("q5_k", GgmlType::kQ5_K, {256}, kblock(176, {0, 2}));
  k.AddTensor("q6_k", GgmlType::kQ6_K, {256}, kblock(210, {208}));
  k.AddTensor("bf16", GgmlType::kBF16, {4}, std::string("\x80\x3f\x00\xc0\x00\x00\x40\x40", 8));
  seeds.emplace_back("kquants.gguf", k.Serialize());
  return seeds;
}

TEST(GgufFuzzSeeds, CommittedSeedsMatchTheWriter) {
  const std::string dir = std::string(AWQ_SOURCE_DIR) + "/fuzz/seeds/gguf_fuzz";
  const bool update = std::getenv("AWQ_UPDATE_FUZZ_SEEDS") != nullptr;
  for (const auto& [name, image] : FuzzSeeds()) {
    SCOPED_TRACE(name);
    // Each seed parses and every tensor dequantizes.
    const GgufFile f = ParseImage(image);
    for (const GgufTensorInfo& t : f.tensors()) {
      const Tensor x = f.ReadF32(t);
      for (int64_t i = 0; i < x.numel(); ++i) ASSERT_TRUE(std::isfinite(x.data<float>()[i]));
    }
    EXPECT_LT(image.size(), 4096u);  // seeds stay small so the replay is fast
    const std::string path = dir + "/" + name;
    if (update) {
      std::filesystem::create_directories(dir);
      WriteFileAtomic(path, image.data(), image.size());
    }
    ASSERT_TRUE(test::FileExists(path)) << "run with AWQ_UPDATE_FUZZ_SEEDS=1 to create " << path;
    EXPECT_EQ(ReadFileToString(path), image) << path << " is stale: rerun with "
                                             << "AWQ_UPDATE_FUZZ_SEEDS=1";
  }
}

}  // namespace
}  // namespace awq
