// GGUF reader: parses and validates the header, metadata and tensor table of a mapped file, and
// dequantizes tensors to fp32.
//
// File layout (GGUF v2/v3, little-endian):
//   "GGUF" u32 version  u64 n_tensors  u64 n_kv
//   n_kv x      { string key, u32 value_type, value }
//   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
//   padding to general.alignment (default 32), then the data section; tensor offsets are
//   relative to its start and aligned.
// where string = { u64 length, bytes } and an array value = { u32 elem_type, u64 count, elems }.
// Every count and length is checked against the bytes that remain before anything is
// allocated, so a corrupt file gets an awq::Error, never a huge allocation or a crash.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>

#include "awq/gguf.h"
#include "core/byte_reader.h"
#include "core/mapped_file.h"

namespace awq {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
// Nested arrays are legal but no real file nests more than twice; the limit keeps a crafted
// file from recursing the parser off the stack.
constexpr int kMaxArrayDepth = 8;
// Each element becomes a GgufValue of ~100 bytes in memory, so a per-array cap keeps a small
// file from asking for gigabytes. The largest real arrays (vocabularies, merges) hold < 1M.
constexpr uint64_t kMaxArrayElems = uint64_t{1} << 24;
// The smallest encodings, used to bound counts by the bytes left: a tensor entry is at least
// name length (8) + n_dims (4) + type (4) + offset (8); a key/value at least key length (8) +
// type (4) + a 1-byte value.
constexpr uint64_t kMinTensorInfoBytes = 24;
constexpr uint64_t kMinKvBytes = 13;

std::string Quote(std::string_view s) {
  std::string out = "'";
  // Names come from untrusted files: keep them printable and short in messages.
  for (char c : s.substr(0, 200)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  if (s.size() > 200) out += "...";
  return out + "'";
}

// Bytes an element of a metadata array occupies at least; 0 for an unknown type.
uint64_t MinValueBytes(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
    case GgufType::kString:
      return 8;
    case GgufType::kArray:
      return 12;
    default:
      return 0;
  }
}

bool IsUnsigned(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kUint16 || t == GgufType::kUint32 ||
         t == GgufType::kUint64;
}
bool IsSigned(GgufType t) {
  return t == GgufType::kInt8 || t == GgufType::kInt16 || t == GgufType::kInt32 ||
         t == GgufType::kInt64;
}
bool IsFloat(GgufType t) { return t == GgufType::kFloat32 || t == GgufType::kFloat64; }

class Parser {
 public:
  Parser(const uint8_t* data, size_t size, const std::string& source)
      : r_(data, size, source), source_(source) {}

  [[noreturn]] void Fail(const std::string& field, const std::string& detail) const {
    throw Error(source_ + ": " + field + ": " + detail);
  }

  ByteReader& reader() { return r_; }

  std::string ReadString(const std::string& field) {
    const uint64_t len = r_.Read<uint64_t>((field + " length").c_str());
    if (len > r_.remaining()) {
      Fail(field + " length", std::to_string(len) + " is past the end of the file (" +
                                  std::to_string(r_.remaining()) + " bytes remain at offset " +
                                  std::to_string(r_.pos()) + ")");
    }
    return std::string(r_.ReadBytes(len, field.c_str()));
  }

  GgufType ReadType(const std::string& field) {
    const uint32_t t = r_.Read<uint32_t>(field.c_str());
    if (t >= static_cast<uint32_t>(GgufType::kCount)) {
      Fail(field, "unknown value type " + std::to_string(t));
    }
    return static_cast<GgufType>(t);
  }

  // Reads one value of type `t` into `v` (v->type is set by the caller).
  void ReadValue(GgufType t, const std::string& field, int depth, GgufValue* v) {
    v->type = t;
    const char* f = field.c_str();
    switch (t) {
      case GgufType::kUint8:
        v->u64 = r_.Read<uint8_t>(f);
        break;
      case GgufType::kInt8:
        v->i64 = r_.Read<int8_t>(f);
        break;
      case GgufType::kUint16:
        v->u64 = r_.Read<uint16_t>(f);
        break;
      case GgufType::kInt16:
        v->i64 = r_.Read<int16_t>(f);
        break;
      case GgufType::kUint32:
        v->u64 = r_.Read<uint32_t>(f);
        break;
      case GgufType::kInt32:
        v->i64 = r_.Read<int32_t>(f);
        break;
      case GgufType::kUint64:
        v->u64 = r_.Read<uint64_t>(f);
        break;
      case GgufType::kInt64:
        v->i64 = r_.Read<int64_t>(f);
        break;
      case GgufType::kFloat32:
        v->f64 = r_.Read<float>(f);
        break;
      case GgufType::kFloat64:
        v->f64 = r_.Read<double>(f);
        break;
      case GgufType::kBool:
        v->u64 = r_.Read<uint8_t>(f) != 0 ? 1 : 0;
        break;
      case GgufType::kString:
        v->str = ReadString(field);
        break;
      case GgufType::kArray:
        ReadArray(field, depth, v);
        break;
      case GgufType::kCount:
        AWQ_CHECK(false);  // ReadType() rejects it
    }
  }

  void ReadArray(const std::string& field, int depth, GgufValue* v) {
    if (depth >= kMaxArrayDepth) {
      Fail(field, "arrays nested " + std::to_string(depth + 1) + " deep (the limit is " +
                      std::to_string(kMaxArrayDepth) + ")");
    }
    v->array_type = ReadType(field + " element type");
    const uint64_t count = r_.Read<uint64_t>((field + " element count").c_str());
    const uint64_t min_bytes = MinValueBytes(v->array_type);
    if (count > r_.remaining() / min_bytes) {
      Fail(field + " element count",
           std::to_string(count) + " elements of type " + GgufTypeName(v->array_type) +
               " need at least " + std::to_string(min_bytes) + " bytes each but only " +
               std::to_string(r_.remaining()) + " bytes remain (truncated or corrupt file)");
    }
    if (count > kMaxArrayElems) {
      Fail(field + " element count", std::to_string(count) + " exceeds the limit of " +
                                         std::to_string(kMaxArrayElems) + " elements");
    }
    v->array.resize(static_cast<size_t>(count));
    const auto elem = [&](uint64_t i) { return field + "[" + std::to_string(i) + "]"; };
    if (v->array_type == GgufType::kString) {
      // Vocabularies hold ~10^5 strings: name the element only when one is bad.
      for (uint64_t i = 0; i < count; ++i) {
        GgufValue& e = v->array[static_cast<size_t>(i)];
        e.type = GgufType::kString;
        if (r_.remaining() < 8) r_.Need(8, (elem(i) + " length").c_str());
        const uint64_t len = r_.Read<uint64_t>("string length");
        if (len > r_.remaining()) {
          Fail(elem(i) + " length", std::to_string(len) + " is past the end of the file (" +
                                        std::to_string(r_.remaining()) +
                                        " bytes remain at offset " + std::to_string(r_.pos()) +
                                        ")");
        }
        e.str = std::string(r_.ReadBytes(len, "string"));
      }
    } else if (v->array_type == GgufType::kArray) {
      for (uint64_t i = 0; i < count; ++i) {
        ReadValue(v->array_type, elem(i), depth + 1, &v->array[static_cast<size_t>(i)]);
      }
    } else {
      // Fixed-size elements cannot run past the end: count * size was checked above.
      for (uint64_t i = 0; i < count; ++i) {
        ReadValue(v->array_type, field, depth + 1, &v->array[static_cast<size_t>(i)]);
      }
    }
  }

 private:
  ByteReader r_;
  const std::string& source_;
};

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

const char* GgufTypeName(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
      return "uint8";
    case GgufType::kInt8:
      return "int8";
    case GgufType::kUint16:
      return "uint16";
    case GgufType::kInt16:
      return "int16";
    case GgufType::kUint32:
      return "uint32";
    case GgufType::kInt32:
      return "int32";
    case GgufType::kFloat32:
      return "float32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kUint64:
      return "uint64";
    case GgufType::kInt64:
      return "int64";
    case GgufType::kFloat64:
      return "float64";
    case GgufType::kCount:
      break;
  }
  return "invalid";
}

Shape GgufTensorInfo::shape() const { return Shape(ne.rbegin(), ne.rend()); }

GgufFile GgufFile::Open(const std::string& path) {
  std::shared_ptr<MappedFile> mapped = MappedFile::Open(path);
  GgufFile f = Parse(mapped->data(), mapped->size(), path);
  f.file_ = std::move(mapped);
  return f;
}

GgufFile GgufFile::Parse(const uint8_t* data, size_t size, const std::string& source) {
  GgufFile f;
  f.source_ = source;
  f.data_ = data;
  f.size_ = size;
  Parser p(data, size, f.source_);
  ByteReader& r = p.reader();

  const uint32_t magic = r.Read<uint32_t>("magic");
  if (magic != kMagic) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%08x", magic);
    p.Fail("magic", std::string(hex) + " is not \"GGUF\" (0x46554747): not a GGUF file");
  }
  f.version_ = r.Read<uint32_t>("version");
  if (f.version_ == 1) {
    p.Fail("version", "1 is not supported (GGUF v1 used 32-bit counts; convert the file to v3)");
  }
  if (f.version_ != 2 && f.version_ != 3) {
    const bool swapped = f.version_ == 0x02000000u || f.version_ == 0x03000000u;
    p.Fail("version", std::to_string(f.version_) + " is not supported (expected 2 or 3" +
                          (swapped ? "; this looks like a big-endian file)" : ")"));
  }
  const uint64_t n_tensors = r.Read<uint64_t>("tensor count");
  const uint64_t n_kv = r.Read<uint64_t>("metadata count");
  if (n_kv > r.remaining() / kMinKvBytes) {
    p.Fail("metadata count", std::to_string(n_kv) + " entries cannot fit in the " +
                                 std::to_string(r.remaining()) + " bytes that remain");
  }
  if (n_tensors > r.remaining() / kMinTensorInfoBytes) {
    p.Fail("tensor count", std::to_string(n_tensors) + " entries cannot fit in the " +
                               std::to_string(r.remaining()) + " bytes that remain");
  }

  f.kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string idx = "metadata #" + std::to_string(i);
    std::string key = p.ReadString(idx + " key");
    const std::string field = "metadata " + Quote(key);
    if (f.kv_index_.count(key)) p.Fail(field, "duplicate key");
    GgufValue v;
    p.ReadValue(p.ReadType(field + " type"), field, 0, &v);
    f.kv_index_.emplace(key, f.kv_.size());
    f.kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = f.Find("general.alignment")) {
    const std::string field = "metadata 'general.alignment'";
    if (!IsUnsigned(a->type)) {
      p.Fail(field, std::string("has type ") + GgufTypeName(a->type) + ", expected uint32");
    }
    if (a->u64 == 0 || (a->u64 & (a->u64 - 1)) != 0 || a->u64 > (uint64_t{1} << 30)) {
      p.Fail(field, std::to_string(a->u64) + " is not a power of two in [1, 2^30]");
    }
    f.alignment_ = a->u64;
  } else {
    f.alignment_ = kDefaultAlignment;
  }

  f.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = p.ReadString("tensor #" + std::to_string(i) + " name");
    const std::string field = "tensor " + Quote(t.name);
    if (f.tensor_index_.count(t.name)) p.Fail(field + " name", "duplicate tensor name");
    const uint32_t n_dims = r.Read<uint32_t>((field + " n_dims").c_str());
    if (n_dims == 0 || n_dims > kMaxDims) {
      p.Fail(field + " n_dims",
             std::to_string(n_dims) + " is out of range [1, " + std::to_string(kMaxDims) + "]");
    }
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const std::string dfield = field + " ne[" + std::to_string(d) + "]";
      const uint64_t ne = r.Read<uint64_t>(dfield.c_str());
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        p.Fail(dfield, std::to_string(ne) + " is not a positive dimension");
      }
      if (numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ne) {
        p.Fail(dfield, std::to_string(ne) + " makes the element count overflow int64");
      }
      numel *= ne;
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    const uint32_t type = r.Read<uint32_t>((field + " type").c_str());
    t.type = static_cast<GgmlType>(type);
    int64_t block_elems = 0, block_bytes = 0;
    if (!GgmlTypeLayout(t.type, &block_elems, &block_bytes)) {
      p.Fail(field + " type", std::to_string(type) + " is not a ggml tensor type");
    }
    if (t.ne[0] % block_elems != 0) {
      p.Fail(field + " ne[0]", std::to_string(t.ne[0]) + " is not a multiple of the " +
                                   GgmlTypeName(t.type) + " block size " +
                                   std::to_string(block_elems));
    }
    // numel / block_elems blocks; the byte count cannot overflow because it is checked
    // against the file size below, but the multiplication itself must be checked first.
    const uint64_t n_blocks = numel / static_cast<uint64_t>(block_elems);
    if (n_blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(block_bytes)) {
      p.Fail(field + " size", "the byte count overflows");
    }
    t.nbytes = n_blocks * static_cast<uint64_t>(block_bytes);
    t.offset = r.Read<uint64_t>((field + " offset").c_str());
    if (t.offset % f.alignment_ != 0) {
      p.Fail(field + " offset", std::to_string(t.offset) + " is not a multiple of the alignment " +
                                    std::to_string(f.alignment_));
    }
    f.tensor_index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }

  // The data section starts at the first aligned offset after the tensor table. A file with
  // no tensors may end right after the table.
  f.data_offset_ = AlignUp(r.pos(), f.alignment_);
  const uint64_t data_size = f.data_offset_ <= size ? size - f.data_offset_ : 0;
  if (!f.tensors_.empty() && f.data_offset_ > size) {
    p.Fail("data section", "starts at offset " + std::to_string(f.data_offset_) +
                               " past the end of the file (size " + std::to_string(size) + ")");
  }
  for (const GgufTensorInfo& t : f.tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset) {
      p.Fail("tensor " + Quote(t.name) + " offset",
             std::to_string(t.offset) + " + " + std::to_string(t.nbytes) +
                 " bytes is past the end of the data section (" + std::to_string(data_size) +
                 " bytes)");
    }
  }
  // Overlap check: sort the ranges by offset and compare neighbours.
  std::vector<size_t> order(f.tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return f.tensors_[a].offset < f.tensors_[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensorInfo& prev = f.tensors_[order[i - 1]];
    const GgufTensorInfo& cur = f.tensors_[order[i]];
    if (cur.offset < prev.offset + prev.nbytes) {
      p.Fail("tensor " + Quote(cur.name) + " offset",
             std::to_string(cur.offset) + " overlaps tensor " + Quote(prev.name) + " (bytes " +
                 std::to_string(prev.offset) + ".." + std::to_string(prev.offset + prev.nbytes) +
                 ")");
    }
  }
  return f;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

namespace {

[[noreturn]] void KeyError(const std::string& source, std::string_view key,
                           const std::string& detail) {
  throw Error(source + ": metadata key " + Quote(key) + " " + detail);
}

[[noreturn]] void WrongType(const std::string& source, std::string_view key, const GgufValue& v,
                            const char* expected) {
  std::string got = GgufTypeName(v.type);
  if (v.type == GgufType::kArray) got += std::string(" of ") + GgufTypeName(v.array_type);
  KeyError(source, key, "has type " + got + ", expected " + expected);
}

uint64_t AsUint(const std::string& source, std::string_view key, const GgufValue& v) {
  if (IsUnsigned(v.type)) return v.u64;
  if (IsSigned(v.type)) {
    if (v.i64 < 0) KeyError(source, key, "is " + std::to_string(v.i64) + ", expected >= 0");
    return static_cast<uint64_t>(v.i64);
  }
  WrongType(source, key, v, "an integer");
}

int64_t AsInt(const std::string& source, std::string_view key, const GgufValue& v) {
  if (IsSigned(v.type)) return v.i64;
  if (IsUnsigned(v.type)) {
    if (v.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      KeyError(source, key, "is " + std::to_string(v.u64) + ", which does not fit in int64");
    }
    return static_cast<int64_t>(v.u64);
  }
  WrongType(source, key, v, "an integer");
}

double AsFloat(const std::string& source, std::string_view key, const GgufValue& v) {
  if (IsFloat(v.type)) return v.f64;
  if (IsUnsigned(v.type)) return static_cast<double>(v.u64);
  if (IsSigned(v.type)) return static_cast<double>(v.i64);
  WrongType(source, key, v, "a number");
}

}  // namespace

std::string GgufFile::GetString(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) KeyError(source_, key, "is missing");
  if (v->type != GgufType::kString) WrongType(source_, key, *v, "string");
  return v->str;
}

std::string GgufFile::GetString(std::string_view key, const std::string& fallback) const {
  return Has(key) ? GetString(key) : fallback;
}

uint64_t GgufFile::GetUint(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) KeyError(source_, key, "is missing");
  return AsUint(source_, key, *v);
}

uint64_t GgufFile::GetUint(std::string_view key, uint64_t fallback) const {
  return Has(key) ? GetUint(key) : fallback;
}

int64_t GgufFile::GetInt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) KeyError(source_, key, "is missing");
  return AsInt(source_, key, *v);
}

int64_t GgufFile::GetInt(std::string_view key, int64_t fallback) const {
  return Has(key) ? GetInt(key) : fallback;
}

double GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) KeyError(source_, key, "is missing");
  return AsFloat(source_, key, *v);
}

double GgufFile::GetFloat(std::string_view key, double fallback) const {
  return Has(key) ? GetFloat(key) : fallback;
}

bool GgufFile::GetBool(std::string_view key, bool fallback) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return fallback;
  if (v->type != GgufType::kBool) WrongType(source_, key, *v, "bool");
  return v->u64 != 0;
}

std::vector<std::string> GgufFile::GetStringArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) KeyError(source_, key, "is missing");
  if (v->type != GgufType::kArray || v->array_type != GgufType::kString) {
    WrongType(source_, key, *v, "array of string");
  }
  std::vector<std::string> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) out.push_back(e.str);
  return out;
}

std::vector<int64_t> GgufFile::GetIntArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) KeyError(source_, key, "is missing");
  if (v->type != GgufType::kArray || !(IsSigned(v->array_type) || IsUnsigned(v->array_type))) {
    WrongType(source_, key, *v, "array of integers");
  }
  std::vector<int64_t> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) out.push_back(AsInt(source_, key, e));
  return out;
}

std::vector<double> GgufFile::GetFloatArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) KeyError(source_, key, "is missing");
  if (v->type != GgufType::kArray ||
      !(IsFloat(v->array_type) || IsSigned(v->array_type) || IsUnsigned(v->array_type))) {
    WrongType(source_, key, *v, "array of numbers");
  }
  std::vector<double> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) out.push_back(AsFloat(source_, key, e));
  return out;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* GgufFile::TensorData(const GgufTensorInfo& info) const {
  AWQ_CHECK(data_offset_ + info.offset + info.nbytes <= size_);
  return data_ + data_offset_ + info.offset;
}

Tensor GgufFile::ReadF32(const GgufTensorInfo& info) const {
  if (!GgmlCanDequantize(info.type)) {
    throw Error(source_ + ": tensor " + Quote(info.name) + " type: " + GgmlTypeName(info.type) +
                " cannot be dequantized by awq.cpp");
  }
  Tensor out(DType::kF32, info.shape());
  // ne[0] is a whole number of blocks (checked at parse time) and rows are contiguous, so the
  // whole tensor is one long run of blocks.
  DequantizeRow(info.type, TensorData(info), out.data<float>(), out.numel());
  // The copy is made: the mapped bytes need not stay resident (streaming reads of a model larger
  // than memory must not grow the resident set).
  if (file_ != nullptr) MappedFile::DropPages(TensorData(info), info.nbytes);
  return out;
}

Tensor GgufFile::ReadF32(std::string_view name) const {
  const GgufTensorInfo* info = FindTensor(name);
  if (info == nullptr) {
    throw Error(source_ + ": tensor " + Quote(name) + " is missing");
  }
  return ReadF32(*info);
}

GgufValue GgufString(std::string s) {
  GgufValue v;
  v.type = GgufType::kString;
  v.str = std::move(s);
  return v;
}

GgufValue GgufU32(uint32_t x) {
  GgufValue v;
  v.type = GgufType::kUint32;
  v.u64 = x;
  return v;
}

GgufValue GgufI32(int32_t x) {
  GgufValue v;
  v.type = GgufType::kInt32;
  v.i64 = x;
  return v;
}

GgufValue GgufF32(float x) {
  GgufValue v;
  v.type = GgufType::kFloat32;
  v.f64 = x;
  return v;
}

GgufValue GgufBool(bool x) {
  GgufValue v;
  v.type = GgufType::kBool;
  v.u64 = x ? 1 : 0;
  return v;
}

GgufValue GgufStringArray(const std::vector<std::string>& xs) {
  GgufValue v;
  v.type = GgufType::kArray;
  v.array_type = GgufType::kString;
  v.array.reserve(xs.size());
  for (const std::string& s : xs) v.array.push_back(GgufString(s));
  return v;
}

GgufValue GgufI32Array(const std::vector<int32_t>& xs) {
  GgufValue v;
  v.type = GgufType::kArray;
  v.array_type = GgufType::kInt32;
  v.array.reserve(xs.size());
  for (int32_t x : xs) v.array.push_back(GgufI32(x));
  return v;
}

GgufValue GgufF32Array(const std::vector<float>& xs) {
  GgufValue v;
  v.type = GgufType::kArray;
  v.array_type = GgufType::kFloat32;
  v.array.reserve(xs.size());
  for (float x : xs) v.array.push_back(GgufF32(x));
  return v;
}

}  // namespace awq
