// Tests for the safetensors reader/writer: interop with the Python reference package, round trips
// of every dtype, sharded checkpoints, and errors for malformed files and indexes.
#include "awq/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "awq/half.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace awq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Runs `fn`, expects an awq::Error whose message contains every one of `parts`.
using test::ExpectError;

// A safetensors file from a header and a data buffer, the way the reference lays it out.
std::string MakeFile(const std::string& header, const std::string& data) {
  const uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + data;
}

SafetensorsFile ParseString(const std::string& bytes, const std::string& source) {
  return SafetensorsFile::Parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                source);
}

void ExpectParseError(const std::string& bytes, std::initializer_list<std::string> parts) {
  ExpectError([&] { ParseString(bytes, "bad.safetensors"); }, parts);
  ExpectError([&] { ParseString(bytes, "bad.safetensors"); }, {"bad.safetensors: "});
}

std::string ReadAll(const std::string& path) { return ReadFileToString(path); }

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A tensor of `dtype` and `shape` whose bytes follow a pattern seeded by `seed`.
Tensor Pattern(DType dtype, Shape shape, int seed) {
  Tensor t(dtype, std::move(shape));
  auto* p = static_cast<uint8_t*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(i * 131 + seed * 17 + 7);
  return t;
}

bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         (a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

// ---------------------------------------------------------------------------------------------
// Interop with the reference implementation (fixtures from tools/make_safetensors_golden.py).

TEST(SafetensorsGolden, ReadsFileWrittenByPython) {
  const json expected = json::parse(ReadAll(test::DataPath("st_golden.json")));
  const std::string path = test::DataPath("st_golden.safetensors");
  const SafetensorsFile f = SafetensorsFile::Open(path);

  EXPECT_EQ(f.names(), expected["order"].get<std::vector<std::string>>());
  EXPECT_EQ(f.metadata(), (expected["metadata"].get<std::map<std::string, std::string>>()));
  EXPECT_EQ(f.metadata().at("unicode"), "Jane Austen \xe2\x80\x94 Emma");

  for (const auto& item : expected["tensors"].items()) {
    // Not a structured binding: clang before 16 cannot capture one in a lambda.
    const std::string name = item.key();
    const nlohmann::json& e = item.value();
    SCOPED_TRACE(name);
    const SafetensorsTensorInfo* info = f.Find(name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype_name, e["dtype"].get<std::string>());
    EXPECT_EQ(info->shape, e["shape"].get<Shape>());
    EXPECT_EQ(info->begin, e["data_offsets"][0].get<uint64_t>());
    EXPECT_EQ(info->end, e["data_offsets"][1].get<uint64_t>());
    if (info->dtype_name == "F64") {
      EXPECT_FALSE(info->supported());
      ExpectError([&] { f.Get(name); }, {path, "'f64.unsupported'", "dtype", "F64"});
      continue;
    }
    const Tensor t = f.Get(name);
    EXPECT_EQ(t.shape(), info->shape);
    const json& values = e["values"];
    ASSERT_EQ(t.numel(), static_cast<int64_t>(values.size()));
    for (int64_t i = 0; i < t.numel(); ++i) {
      const json& v = values[static_cast<size_t>(i)];
      switch (t.dtype()) {
        case DType::kF32:
          EXPECT_EQ(t.data<float>()[i], v.get<float>()) << i;
          break;
        case DType::kF16:
        case DType::kBF16:
          EXPECT_EQ(t.data<uint16_t>()[i], v.get<uint16_t>()) << i;
          break;
        case DType::kI32:
          EXPECT_EQ(t.data<int32_t>()[i], v.get<int32_t>()) << i;
          break;
        case DType::kI64:
          EXPECT_EQ(t.data<int64_t>()[i], v.get<int64_t>()) << i;
          break;
        case DType::kI8:
          EXPECT_EQ(t.data<int8_t>()[i], v.get<int8_t>()) << i;
          break;
        case DType::kU8:
          EXPECT_EQ(t.data<uint8_t>()[i], v.get<uint8_t>()) << i;
          break;
        default:
          FAIL() << "unexpected dtype";
      }
    }
    if (e.contains("as_float")) {
      const Tensor f32 = f.GetF32(name);
      ASSERT_EQ(f32.dtype(), DType::kF32);
      for (int64_t i = 0; i < f32.numel(); ++i) {
        // Exact: F16 and BF16 widen to F32 without rounding.
        EXPECT_EQ(f32.data<float>()[i], e["as_float"][static_cast<size_t>(i)].get<float>()) << i;
      }
    } else {
      ExpectError([&] { f.GetF32(name); }, {path, "'" + name + "'", "dtype", "cannot"});
    }
  }
  EXPECT_EQ(f.Get("scalar").numel(), 1);
  EXPECT_EQ(f.Get("empty").numel(), 0);
}

TEST(SafetensorsGolden, WriterReproducesPythonBytes) {
  const std::string golden = test::DataPath("st_golden_plain.safetensors");
  const SafetensorsFile f = SafetensorsFile::Open(golden);
  SafetensorsWriter w;
  // Added in reverse file order: the writer must choose the reference order itself.
  for (auto it = f.names().rbegin(); it != f.names().rend(); ++it) w.Add(*it, f.Get(*it));
  const std::string out = test::MakeTempDir("st_bytes") + "/out.safetensors";
  w.WriteFile(out);
  const std::string a = ReadAll(golden), b = ReadAll(out);
  EXPECT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b) << "C++ writer output differs from safetensors.torch.save_file";
}

// ---------------------------------------------------------------------------------------------
// Round trips.

TEST(SafetensorsRoundTrip, EveryDtypeOddShapes) {
  SafetensorsWriter w;
  std::vector<std::pair<std::string, Tensor>> tensors;
  int seed = 0;
  for (DType dt :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kI32, DType::kI64, DType::kI8, DType::kU8}) {
    for (const Shape& shape : {Shape{3, 5}, Shape{7}, Shape{1, 3, 1}, Shape{}, Shape{2, 0}}) {
      const std::string name = std::string("t.") + DTypeName(dt) + "." + ShapeToString(shape);
      tensors.emplace_back(name, Pattern(dt, shape, ++seed));
      w.Add(name, tensors.back().second);
    }
  }
  w.SetMetadata("quant_method", "awq");
  const std::string path = test::MakeTempDir("st_rt") + "/all.safetensors";
  w.WriteFile(path);

  const SafetensorsFile f = SafetensorsFile::Open(path);
  EXPECT_EQ(f.size(), tensors.size());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("quant_method"), "awq");
  // The header is padded so that the data buffer starts 8-byte aligned.
  EXPECT_EQ((fs::file_size(path) - f.data_size()) % 8, 0u);
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    const Tensor got = f.Get(name);
    EXPECT_TRUE(SameBytes(got, t));
    // Each tensor is aligned to its element size, so views are never copies.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(got.raw()) % DTypeSize(t.dtype()), 0u);
  }
  // Half precision converts exactly.
  const Tensor h = f.GetF32("t.F16.[3, 5]");
  const Tensor src = tensors[5].second;
  ASSERT_EQ(src.dtype(), DType::kF16);
  for (int64_t i = 0; i < h.numel(); ++i) {
    const float expected = Fp16ToFp32(src.data<uint16_t>()[i]);
    if (expected == expected) {  // NaN payloads need not survive
      EXPECT_EQ(h.data<float>()[i], expected);
    }
  }
}

TEST(SafetensorsRoundTrip, ViewOutlivesTheFileObject) {
  const std::string path = test::MakeTempDir("st_view") + "/v.safetensors";
  SafetensorsWriter w;
  const Tensor t = Pattern(DType::kF32, {4, 4}, 3);
  w.Add("w", t);
  w.WriteFile(path);
  Tensor view;
  {
    const SafetensorsFile f = SafetensorsFile::Open(path);
    view = f.Get("w");
  }
  EXPECT_TRUE(SameBytes(view, t));
}

TEST(SafetensorsRoundTrip, MisalignedTensorIsCopiedAligned) {
  // A U8 byte first puts the F32 tensor at data offset 1: legal, though no reference writer does
  // it.
  std::string data = "\x07";
  const float vals[2] = {1.5f, -3.25f};
  data.append(reinterpret_cast<const char*>(vals), 8);
  const std::string header = R"({"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                             R"("f":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  const SafetensorsFile f = ParseString(MakeFile(header, data), "mis.safetensors");
  const Tensor t = f.Get("f");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 4, 0u);
  EXPECT_EQ(t.data<float>()[0], 1.5f);
  EXPECT_EQ(t.data<float>()[1], -3.25f);
  EXPECT_EQ(f.Get("b").data<uint8_t>()[0], 7);
}

TEST(SafetensorsRoundTrip, NoMetadataAndNoTensors) {
  const SafetensorsFile f = ParseString(MakeFile("{}      ", ""), "empty.safetensors");
  EXPECT_EQ(f.size(), 0u);
  EXPECT_TRUE(f.metadata().empty());
  ExpectError([&] { f.Get("x"); }, {"empty.safetensors", "'x'", "not found"});
}

// ---------------------------------------------------------------------------------------------
// Malformed files.

TEST(SafetensorsMalformed, TruncatedHeaderLength) {
  ExpectParseError(std::string("\x10\x00\x00", 3), {"header length", "truncated"});
}

TEST(SafetensorsMalformed, HeaderLengthPastEndOfFile) {
  std::string bytes = MakeFile("{}", "");
  bytes[0] = 100;
  ExpectParseError(bytes, {"header length", "100 bytes", "only 2"});
}

TEST(SafetensorsMalformed, HeaderLengthInsane) {
  std::string bytes = MakeFile("{}", "");
  const uint64_t huge = 1ull << 40;
  std::memcpy(bytes.data(), &huge, 8);
  ExpectParseError(bytes, {"header length", std::to_string(huge), "exceeds"});
}

TEST(SafetensorsMalformed, OpenNamesThePath) {
  const std::string path = test::MakeTempDir("st_bad") + "/broken.safetensors";
  WriteAll(path, MakeFile(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234"));
  ExpectError([&] { SafetensorsFile::Open(path); }, {path, "'w'", "data_offsets", "outside"});
  ExpectError([&] { SafetensorsFile::Open(path + ".missing"); }, {path + ".missing"});
}

TEST(SafetensorsMalformed, InvalidJson) {
  ExpectParseError(MakeFile(R"({"w": {"dtype": )", ""), {"header", "invalid JSON"});
  ExpectParseError(MakeFile("[1, 2]", ""), {"header", "JSON object"});
  ExpectParseError(MakeFile("\"str\"", ""), {"header", "JSON object"});
}

TEST(SafetensorsMalformed, MissingFields) {
  ExpectParseError(MakeFile(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "abcd"),
                   {"'w'", "dtype", "missing"});
  ExpectParseError(MakeFile(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", "abcd"),
                   {"'w'", "shape", "missing"});
  ExpectParseError(MakeFile(R"({"w":{"dtype":"F32","shape":[1]}})", "abcd"),
                   {"'w'", "data_offsets", "missing"});
  ExpectParseError(MakeFile(R"({"w":[1,2]})", ""), {"'w'", "entry", "[1,2]"});
}

TEST(SafetensorsMalformed, BadFieldTypes) {
  ExpectParseError(MakeFile(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", "abcd"),
                   {"'w'", "dtype", "7"});
  ExpectParseError(MakeFile(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "abcd"),
                   {"'w'", "shape", "[-1]"});
  ExpectParseError(MakeFile(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "abcd"),
                   {"'w'", "shape", "[1.5]"});
  ExpectParseError(MakeFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "abcd"),
                   {"'w'", "data_offsets", "[0]"});
  ExpectParseError(MakeFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", "abcd"),
                   {"'w'", "data_offsets", "end < begin"});
}

TEST(SafetensorsMalformed, UnknownDtype) {
  ExpectParseError(MakeFile(R"({"w":{"dtype":"Q4_0","shape":[1],"data_offsets":[0,1]}})", "a"),
                   {"'w'", "dtype", "unknown dtype 'Q4_0'"});
}

TEST(SafetensorsMalformed, OffsetsOutsideDataBuffer) {
  ExpectParseError(MakeFile(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", "abcd"),
                   {"'w'", "data_offsets", "[4, 12]", "outside", "4 bytes"});
  ExpectParseError(
      MakeFile(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,)"
               R"(18446744073709551615]}})",
               ""),
      {"'w'", "data_offsets", "outside"});
}

TEST(SafetensorsMalformed, SizeDisagreesWithShape) {
  ExpectParseError(
      MakeFile(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 'x')),
      {"'w'", "data_offsets", "spans 8 bytes", "[3]", "needs 12"});
  ExpectParseError(
      MakeFile(R"({"w":{"dtype":"F16","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""),
      {"'w'", "shape", "overflows"});
  // Tensor would reject this shape too, though a zero dimension makes it hold nothing.
  ExpectParseError(
      MakeFile(R"({"w":{"dtype":"F16","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})",
               ""),
      {"'w'", "shape", "overflows"});
  const SafetensorsFile f = ParseString(
      MakeFile(R"({"w":{"dtype":"F16","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})",
               ""),
      "zero.safetensors");
  EXPECT_EQ(f.Find("w")->nbytes(), 0u);
  EXPECT_EQ(f.Get("w").numel(), 0);
}

TEST(SafetensorsMalformed, OverlappingTensors) {
  ExpectParseError(MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            std::string(12, 'x')),
                   {"'b'", "data_offsets", "[4, 12]", "overlaps tensor 'a'", "[0, 8]"});
  // The overlap is found against the longest tensor so far, not just the previous one.
  ExpectParseError(MakeFile(R"({"a":{"dtype":"U8","shape":[10],"data_offsets":[0,10]},)"
                            R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
                            R"("c":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})",
                            std::string(10, 'x')),
                   {"'b'", "overlaps tensor 'a'"});
}

TEST(SafetensorsMalformed, DuplicateTensorNames) {
  ExpectParseError(MakeFile(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                            R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                            "ab"),
                   {"header", "duplicate key 'w'"});
  ExpectParseError(
      MakeFile(R"({"w":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", "a"),
      {"duplicate key 'dtype'"});
}

TEST(SafetensorsMalformed, MetadataMustBeStrings) {
  ExpectParseError(MakeFile(R"({"__metadata__":{"format":"pt","n":3}})", ""),
                   {"__metadata__.n", "strings", "3"});
  ExpectParseError(MakeFile(R"({"__metadata__":[1]})", ""), {"__metadata__", "[1]"});
}

TEST(SafetensorsMalformed, UnsupportedButKnownDtypeLoadsAndFailsOnRead) {
  const SafetensorsFile f =
      ParseString(MakeFile(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]},)"
                           R"("x":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[3,5]},)"
                           R"("d":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}})",
                           std::string(16, '\0')),
                  "mixed.safetensors");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"m", "x", "d"}));
  ExpectError([&] { f.Get("m"); }, {"mixed.safetensors", "'m'", "dtype", "BOOL", "not supported"});
  ExpectError([&] { f.GetF32("x"); }, {"mixed.safetensors", "'x'", "F8_E4M3"});
  ExpectError([&] { f.Get("d"); }, {"'d'", "F64"});
}

// ---------------------------------------------------------------------------------------------
// Writer.

TEST(SafetensorsWriter, RejectsBadNames) {
  SafetensorsWriter w;
  w.Add("a", Tensor(DType::kF32, {1}));
  ExpectError([&] { w.Add("a", Tensor(DType::kF32, {1})); }, {"'a'", "added twice"});
  ExpectError([&] { w.Add("", Tensor(DType::kF32, {1})); }, {"empty tensor name"});
  ExpectError([&] { w.Add("__metadata__", Tensor(DType::kF32, {1})); }, {"__metadata__"});
  ExpectError([&] { w.Add("bad\xff", Tensor(DType::kF32, {1})); }, {"UTF-8"});
  ExpectError([&] { w.Add("none", Tensor()); }, {"'none'", "no data"});
  ExpectError([&] { w.WriteFile("/nonexistent-dir/x.safetensors"); },
              {"/nonexistent-dir/x.safetensors", "cannot create"});
}

TEST(SafetensorsWriter, ParseByteSize) {
  EXPECT_EQ(ParseByteSize("5GB"), 5'000'000'000ull);
  EXPECT_EQ(ParseByteSize("500MB"), 500'000'000ull);
  EXPECT_EQ(ParseByteSize("2GiB"), 2ull << 30);
  EXPECT_EQ(ParseByteSize("64KiB"), 65536ull);
  EXPECT_EQ(ParseByteSize("3mib"), 3ull << 20);
  EXPECT_EQ(ParseByteSize("1TB"), 1'000'000'000'000ull);
  EXPECT_EQ(ParseByteSize("1024"), 1024ull);
  EXPECT_EQ(ParseByteSize("7B"), 7ull);
  // transformers.utils.hub.convert_file_size_to_int: a lowercase trailing b means bits.
  EXPECT_EQ(ParseByteSize("8Gb"), 1'000'000'000ull);
  EXPECT_EQ(ParseByteSize("10kb"), 1250ull);
  for (const char* bad :
       {"", "GB", "5XB", "-5GB", "5.5GB", " 5GB", "5 GB", "99999999999999999999", "20000000TiB"}) {
    ExpectError([&] { ParseByteSize(bad); }, {std::string("'") + bad + "'"});
  }
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints.

// Five 100-byte tensors (25 F32 each) in a fixed order.
SafetensorsWriter FiveTensors(std::vector<Tensor>* keep) {
  SafetensorsWriter w;
  const char* names[] = {"model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight",
                         "model.layers.0.mlp.down_proj.weight", "model.norm.weight",
                         "lm_head.weight"};
  for (int i = 0; i < 5; ++i) {
    keep->push_back(Pattern(DType::kF32, {5, 5}, i));
    w.Add(names[i], keep->back());
  }
  return w;
}

TEST(SafetensorsSharded, SplitsLikeTransformers) {
  std::vector<Tensor> keep;
  const SafetensorsWriter w = FiveTensors(&keep);
  const std::string dir = test::MakeTempDir("st_shard");
  const auto written = w.WriteSharded(dir, 250);
  ASSERT_EQ(written.size(), 4u);
  EXPECT_EQ(written[0], dir + "/model-00001-of-00003.safetensors");
  EXPECT_EQ(written[2], dir + "/model-00003-of-00003.safetensors");
  EXPECT_EQ(written[3], dir + "/model.safetensors.index.json");

  // Byte-for-byte what transformers writes: json.dumps(index, indent=2, sort_keys=True) + "\n".
  const std::string expected_index = R"({
  "metadata": {
    "total_size": 500
  },
  "weight_map": {
    "lm_head.weight": "model-00003-of-00003.safetensors",
    "model.embed_tokens.weight": "model-00001-of-00003.safetensors",
    "model.layers.0.mlp.down_proj.weight": "model-00002-of-00003.safetensors",
    "model.layers.0.mlp.up_proj.weight": "model-00001-of-00003.safetensors",
    "model.norm.weight": "model-00002-of-00003.safetensors"
  }
}
)";
  EXPECT_EQ(ReadAll(written[3]), expected_index);

  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(ck.files().size(), 3u);
  EXPECT_EQ(ck.names().size(), 5u);
  EXPECT_TRUE(std::is_sorted(ck.names().begin(), ck.names().end()));
  EXPECT_TRUE(SameBytes(ck.Get("model.embed_tokens.weight"), keep[0]));
  EXPECT_TRUE(SameBytes(ck.Get("lm_head.weight"), keep[4]));
  EXPECT_EQ(ck.FileOf("model.norm.weight").source(), dir + "/model-00002-of-00003.safetensors");
  EXPECT_EQ(ck.dtype("model.norm.weight"), DType::kF32);
  EXPECT_EQ(ck.shape("model.norm.weight"), (Shape{5, 5}));
  EXPECT_EQ(ck.GetF32("model.norm.weight").numel(), 25);
  EXPECT_FALSE(ck.Has("missing"));
  ExpectError([&] { ck.Get("missing"); }, {dir, "'missing'", "not found"});
}

TEST(SafetensorsSharded, OversizedTensorGetsItsOwnShard) {
  SafetensorsWriter w;
  w.Add("a", Tensor(DType::kF32, {25}));
  w.Add("b", Tensor(DType::kF32, {75}));  // 300 bytes > 250
  w.Add("c", Tensor(DType::kF32, {25}));
  const std::string dir = test::MakeTempDir("st_big");
  w.WriteSharded(dir, 250);
  // huggingface_hub.split_torch_state_dict_into_shards gives {00001: [b], 00002: [a, c]}.
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(ck.FileOf("b").source(), dir + "/model-00001-of-00002.safetensors");
  EXPECT_EQ(ck.FileOf("a").source(), dir + "/model-00002-of-00002.safetensors");
  EXPECT_EQ(ck.FileOf("c").source(), dir + "/model-00002-of-00002.safetensors");
}

TEST(SafetensorsSharded, SingleFileWhenItFitsAndStaleFilesGo) {
  std::vector<Tensor> keep;
  const SafetensorsWriter w = FiveTensors(&keep);
  const std::string dir = test::MakeTempDir("st_single");
  w.WriteSharded(dir, 250);  // an earlier sharded save
  WriteAll(dir + "/config.json", "{}");
  const auto written = w.WriteSharded(dir, ParseByteSize("5GB"));
  ASSERT_EQ(written, std::vector<std::string>{dir + "/model.safetensors"});
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir + "/model-00001-of-00003.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/config.json"));
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(ck.files().size(), 1u);
  EXPECT_TRUE(SameBytes(ck.Get("model.layers.0.mlp.up_proj.weight"), keep[1]));

  // And back to shards: the single file must go, or it would shadow them.
  w.WriteSharded(dir, 250);
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  EXPECT_EQ(SafetensorsCheckpoint::Open(dir).files().size(), 3u);
  ExpectError([&] { w.WriteSharded(dir, 0); }, {dir, "0"});
}

TEST(SafetensorsSharded, OpenSingleFilePathAndEmptyFolder) {
  const std::string dir = test::MakeTempDir("st_open");
  ExpectError([&] { SafetensorsCheckpoint::Open(dir); }, {dir, "model.safetensors"});
  ExpectError([&] { SafetensorsCheckpoint::Open(dir + "/nope"); }, {dir + "/nope", "no such"});
  const SafetensorsCheckpoint ck =
      SafetensorsCheckpoint::Open(test::DataPath("st_golden.safetensors"));
  EXPECT_TRUE(ck.Has("f32.matrix"));
  ExpectError([&] { ck.dtype("f64.unsupported"); }, {"st_golden.safetensors", "F64"});
}

// A two-shard checkpoint with a hand-written index, for the index error cases.
class IndexErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::MakeTempDir("st_index");
    SafetensorsWriter a;
    a.Add("x", Tensor(DType::kF32, {2}));
    a.WriteFile(dir_ + "/a.safetensors");
    SafetensorsWriter b;
    b.Add("y", Tensor(DType::kF32, {2}));
    b.WriteFile(dir_ + "/b.safetensors");
  }
  void WriteIndex(const std::string& weight_map) {
    WriteAll(index(), R"({"metadata": {"total_size": 16}, "weight_map": )" + weight_map + "}");
  }
  std::string index() const { return dir_ + "/model.safetensors.index.json"; }
  std::string dir_;
};

TEST_F(IndexErrors, ConsistentIndexOpens) {
  WriteIndex(R"({"x": "a.safetensors", "y": "b.safetensors"})");
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::Open(dir_);
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"x", "y"}));
}

TEST_F(IndexErrors, MissingShardFile) {
  WriteIndex(R"({"x": "a.safetensors", "y": "gone.safetensors"})");
  ExpectError([&] { SafetensorsCheckpoint::Open(dir_); },
              {index(), "weight_map.y", dir_ + "/gone.safetensors", "does not exist"});
}

TEST_F(IndexErrors, TensorAbsentFromItsShard) {
  WriteIndex(R"({"x": "a.safetensors", "y": "b.safetensors", "z": "b.safetensors"})");
  ExpectError([&] { SafetensorsCheckpoint::Open(dir_); },
              {index(), "weight_map.z", "absent", dir_ + "/b.safetensors"});
}

TEST_F(IndexErrors, TensorInTwoShards) {
  SafetensorsWriter c;
  c.Add("x", Tensor(DType::kF32, {2}));
  c.WriteFile(dir_ + "/c.safetensors");
  WriteIndex(R"({"x": "a.safetensors", "y": "b.safetensors", "w": "c.safetensors"})");
  ExpectError([&] { SafetensorsCheckpoint::Open(dir_); },
              {index(), "'x'", "two shards", dir_ + "/a.safetensors", dir_ + "/c.safetensors"});
}

TEST_F(IndexErrors, TensorInTheWrongShardOrUnlisted) {
  WriteIndex(R"({"x": "b.safetensors", "y": "a.safetensors"})");
  ExpectError([&] { SafetensorsCheckpoint::Open(dir_); },
              {index(), "weight_map.x", "says b.safetensors", dir_ + "/a.safetensors"});
  SafetensorsWriter pq;
  pq.Add("p", Tensor(DType::kF32, {2}));
  pq.Add("q", Tensor(DType::kF32, {2}));
  pq.WriteFile(dir_ + "/pq.safetensors");
  WriteIndex(R"({"p": "pq.safetensors"})");
  ExpectError([&] { SafetensorsCheckpoint::Open(dir_); },
              {index(), "'q'", dir_ + "/pq.safetensors", "missing from weight_map"});
}

TEST_F(IndexErrors, MalformedIndex) {
  WriteIndex(R"({"x": "../a.safetensors"})");
  ExpectError([&] { SafetensorsCheckpoint::Open(dir_); }, {index(), "weight_map.x", "../a"});
  WriteIndex(R"({"x": 3})");
  ExpectError([&] { SafetensorsCheckpoint::Open(dir_); }, {index(), "weight_map.x", "3"});
  WriteIndex(R"({"x": "a.safetensors", "x": "b.safetensors"})");
  ExpectError([&] { SafetensorsCheckpoint::Open(dir_); }, {index(), "duplicate key 'x'"});
  WriteAll(index(), R"({"metadata": {}})");
  ExpectError([&] { SafetensorsCheckpoint::Open(dir_); }, {index(), "weight_map", "missing"});
  WriteAll(index(), "{");
  ExpectError([&] { SafetensorsCheckpoint::Open(dir_); }, {index(), "invalid JSON"});
}

}  // namespace
}  // namespace awq
