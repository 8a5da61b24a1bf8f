// GGUF (v2, v3) reader: metadata of every value type, the tensor table, and dequantization of
// every tensor type the packaged models use to fp32.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "awq/tensor.h"

namespace awq {

class MappedFile;

// Metadata value types, numbered as in the GGUF specification.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
  kCount = 13,  // sentinel
};
const char* GgufTypeName(GgufType t);

// Tensor element types, numbered as in ggml. Only the ones listed are known to awq.cpp; files
// with other types load, but reading such a tensor is an error naming the tensor and the type.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ4_NL = 20,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};
// "F32", "Q4_K", ...; "type<N>" for numbers not listed above.
std::string GgmlTypeName(GgmlType t);
// Elements per block and bytes per block; false for types awq.cpp cannot size.
bool GgmlTypeLayout(GgmlType t, int64_t* block_elems, int64_t* block_bytes);
// True when DequantizeRow() supports the type.
bool GgmlCanDequantize(GgmlType t);
// Dequantizes n elements (n a multiple of the block size) from `src` into `dst`.
// Throws awq::Error for unsupported types.
void DequantizeRow(GgmlType t, const void* src, float* dst, int64_t n);

// One metadata value. Scalars live in the matching field; arrays hold their elements in `array`
// (all of type `array_type`; nested arrays are allowed by the format and supported).
struct GgufValue {
  GgufType type = GgufType::kUint8;
  GgufType array_type = GgufType::kUint8;  // only for kArray
  uint64_t u64 = 0;                        // kUint8..kUint64 and kBool
  int64_t i64 = 0;                         // kInt8..kInt64
  double f64 = 0.0;                        // kFloat32, kFloat64
  std::string str;                         // kString
  std::vector<GgufValue> array;
};

// Metadata as written: key-value pairs in file order.
using GgufMetadata = std::vector<std::pair<std::string, GgufValue>>;

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the fastest-varying (row length)
  uint64_t offset = 0;      // from the start of the data section (already aligned)
  uint64_t nbytes = 0;
  // Row-major shape as PyTorch/safetensors write it: ne reversed, e.g. [out, in] for a linear.
  Shape shape() const;
};

class GgufFile {
 public:
  // Maps and parses the file. Throws awq::Error naming the path, the field and the value for
  // any malformed input: bad magic, unsupported version, truncated header, string or array
  // lengths past the end, unknown value type, tensor offsets or sizes outside the file or
  // overflowing, misaligned offsets, duplicate tensor names or keys, zero/negative dims.
  static GgufFile Open(const std::string& path);
  // Parses an in-memory image (tests, fuzzing). `source` names it in error messages. The
  // bytes must outlive the returned object.
  static GgufFile Parse(const uint8_t* data, size_t size, const std::string& source);

  const std::string& path() const { return source_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  // Typed getters. The 1-argument forms throw awq::Error "<file>: metadata key <key> ..." when
  // the key is missing or has an incompatible type; the 2-argument forms return the fallback
  // when missing (and still throw on a wrong type).
  std::string GetString(std::string_view key) const;
  std::string GetString(std::string_view key, const std::string& fallback) const;
  // Any integer type (signed values must be >= 0 for GetUint).
  uint64_t GetUint(std::string_view key) const;
  uint64_t GetUint(std::string_view key, uint64_t fallback) const;
  int64_t GetInt(std::string_view key) const;
  int64_t GetInt(std::string_view key, int64_t fallback) const;
  // Float32/Float64 (and integers, converted).
  double GetFloat(std::string_view key) const;
  double GetFloat(std::string_view key, double fallback) const;
  bool GetBool(std::string_view key, bool fallback) const;
  std::vector<std::string> GetStringArray(std::string_view key) const;
  std::vector<int64_t> GetIntArray(std::string_view key) const;
  std::vector<double> GetFloatArray(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  // The tensor's bytes inside the file (bounds were checked at parse time).
  const uint8_t* TensorData(const GgufTensorInfo& info) const;
  // Dequantizes a tensor to an owned F32 tensor with shape info.shape(). Throws awq::Error
  // naming the file, the tensor and the type when the type cannot be dequantized.
  Tensor ReadF32(const GgufTensorInfo& info) const;
  // Same, by name; throws awq::Error naming the file and tensor when it is missing.
  Tensor ReadF32(std::string_view name) const;

 private:
  std::shared_ptr<const MappedFile> file_;  // null for Parse()
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string source_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// Writes a GGUF v3 file (used by tests to build fixtures, and by the fuzz seeds). Tensors are
// given as raw bytes of the stated ggml type; the writer lays them out aligned.
class GgufWriter {
 public:
  void AddMetadata(std::string key, GgufValue value);
  void AddTensor(std::string name, GgmlType type, std::vector<int64_t> ne, std::string bytes);
  // The whole file image.
  std::string Serialize(uint64_t alignment = 32) const;
  // Serialize() written to a temporary path and renamed into place.
  void WriteFile(const std::string& path, uint64_t alignment = 32) const;

 private:
  std::vector<std::pair<std::string, GgufValue>> kv_;
  struct PendingTensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    std::string bytes;
  };
  std::vector<PendingTensor> tensors_;
};

// One tensor of a GGUF file to be written: its name, type, dimensions (ne[0] = values per row)
// and the byte size its type and dimensions imply.
struct GgufTensorDecl {
  std::string name;
  GgmlType type;
  std::vector<int64_t> ne;
  uint64_t bytes = 0;
};

// The bytes of a tensor of `type` and dimensions `ne`; an awq::Error naming `name` when the rows
// are not whole blocks or the type is unknown.
uint64_t GgufTensorBytes(GgmlType type, const std::vector<int64_t>& ne, const std::string& name);

// A GGUF v3 header (metadata, tensor infos with offsets) padded to `alignment`: what precedes the
// data section.
std::string GgufHeader(const std::vector<std::pair<std::string, GgufValue>>& kv,
                       const std::vector<GgufTensorDecl>& tensors, uint64_t alignment = 32);

// Writes a GGUF v3 file tensor by tensor, so that a model is never held whole: the header first
// (every tensor declared up front), then Write() for each tensor in the declared order. The file
// is built as "<path>.tmp-<pid>" and renamed to `path` by Finish(); a writer destroyed before
// Finish() (an error, an exception) removes its temporary file, so `path` is never half-written.
class GgufStreamWriter {
 public:
  GgufStreamWriter(std::string path, const std::vector<std::pair<std::string, GgufValue>>& kv,
                   std::vector<GgufTensorDecl> tensors, uint64_t alignment = 32);
  ~GgufStreamWriter();
  GgufStreamWriter(const GgufStreamWriter&) = delete;
  GgufStreamWriter& operator=(const GgufStreamWriter&) = delete;

  // The next declared tensor's bytes (its name and size must match the declaration).
  void Write(const std::string& name, const void* bytes, size_t n);
  // Flushes, syncs and renames the file into place; every declared tensor must be written.
  void Finish();

 private:
  void Put(const void* data, size_t n);

  std::string path_, tmp_;
  std::vector<GgufTensorDecl> tensors_;
  uint64_t alignment_;
  std::FILE* file_ = nullptr;
  size_t next_ = 0;
  uint64_t written_ = 0;
};

// Convenience constructors for GgufValue.
GgufValue GgufString(std::string s);
GgufValue GgufU32(uint32_t v);
GgufValue GgufI32(int32_t v);
GgufValue GgufF32(float v);
GgufValue GgufBool(bool v);
GgufValue GgufStringArray(const std::vector<std::string>& v);
GgufValue GgufI32Array(const std::vector<int32_t>& v);
GgufValue GgufF32Array(const std::vector<float>& v);

}  // namespace awq
