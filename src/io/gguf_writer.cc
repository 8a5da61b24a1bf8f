// GGUF v3 writer: serializes metadata and raw tensor bytes in the layout gguf.cc reads.
//
// It writes what it is given: the only checks are that a tensor's bytes match its type and
// shape, so tests can still build files with duplicate names or odd metadata on purpose.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "awq/gguf.h"
#include "core/mapped_file.h"

namespace awq {
namespace {

class Out {
 public:
  template <class T>
  void Put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s_.append(b, sizeof(T));
  }
  void PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    s_ += s;
  }
  void PadTo(uint64_t alignment) {
    const uint64_t rem = s_.size() % alignment;
    if (rem != 0) s_.append(static_cast<size_t>(alignment - rem), '\0');
  }
  std::string& str() { return s_; }

 private:
  std::string s_;
};

// Writes the payload of `v` read as type `t` (the type tag itself is written by the caller,
// since array elements carry none).
void PutValue(Out* o, GgufType t, const GgufValue& v) {
  switch (t) {
    case GgufType::kUint8:
      o->Put<uint8_t>(static_cast<uint8_t>(v.u64));
      break;
    case GgufType::kInt8:
      o->Put<int8_t>(static_cast<int8_t>(v.i64));
      break;
    case GgufType::kUint16:
      o->Put<uint16_t>(static_cast<uint16_t>(v.u64));
      break;
    case GgufType::kInt16:
      o->Put<int16_t>(static_cast<int16_t>(v.i64));
      break;
    case GgufType::kUint32:
      o->Put<uint32_t>(static_cast<uint32_t>(v.u64));
      break;
    case GgufType::kInt32:
      o->Put<int32_t>(static_cast<int32_t>(v.i64));
      break;
    case GgufType::kUint64:
      o->Put<uint64_t>(v.u64);
      break;
    case GgufType::kInt64:
      o->Put<int64_t>(v.i64);
      break;
    case GgufType::kFloat32:
      o->Put<float>(static_cast<float>(v.f64));
      break;
    case GgufType::kFloat64:
      o->Put<double>(v.f64);
      break;
    case GgufType::kBool:
      o->Put<uint8_t>(v.u64 != 0 ? 1 : 0);
      break;
    case GgufType::kString:
      o->PutString(v.str);
      break;
    case GgufType::kArray:
      AWQ_CHECK(v.array_type != GgufType::kCount);
      o->Put<uint32_t>(static_cast<uint32_t>(v.array_type));
      o->Put<uint64_t>(v.array.size());
      for (const GgufValue& e : v.array) PutValue(o, v.array_type, e);
      break;
    case GgufType::kCount:
      AWQ_CHECK(false);
  }
}

}  // namespace

void GgufWriter::AddMetadata(std::string key, GgufValue value) {
  AWQ_CHECK(value.type != GgufType::kCount);
  kv_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::AddTensor(std::string name, GgmlType type, std::vector<int64_t> ne,
                           std::string bytes) {
  int64_t block_elems = 0, block_bytes = 0;
  if (GgmlTypeLayout(type, &block_elems, &block_bytes)) {
    const int64_t numel = NumElements(ne);
    if (ne.empty() || ne[0] % block_elems != 0 ||
        static_cast<uint64_t>(numel / block_elems * block_bytes) != bytes.size()) {
      throw Error("GgufWriter: tensor '" + name + "' bytes: " + std::to_string(bytes.size()) +
                  " do not hold a " + GgmlTypeName(type) + " tensor with ne[0] " +
                  (ne.empty() ? std::string("missing") : std::to_string(ne[0])) + " and " +
                  std::to_string(numel) + " elements");
    }
  }
  tensors_.push_back(PendingTensor{std::move(name), type, std::move(ne), std::move(bytes)});
}

std::string GgufHeader(const std::vector<std::pair<std::string, GgufValue>>& kv,
                       const std::vector<GgufTensorDecl>& tensors, uint64_t alignment) {
  AWQ_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0);
  bool has_alignment_key = false;
  for (const auto& [key, value] : kv) has_alignment_key |= key == "general.alignment";
  // A non-default alignment must be recorded for readers, unless the caller wrote the key.
  const bool add_alignment_key = alignment != 32 && !has_alignment_key;

  Out o;
  o.Put<uint32_t>(0x46554747);  // "GGUF"
  o.Put<uint32_t>(3);
  o.Put<uint64_t>(tensors.size());
  o.Put<uint64_t>(kv.size() + (add_alignment_key ? 1 : 0));
  for (const auto& [key, value] : kv) {
    o.PutString(key);
    o.Put<uint32_t>(static_cast<uint32_t>(value.type));
    PutValue(&o, value.type, value);
  }
  if (add_alignment_key) {
    o.PutString("general.alignment");
    o.Put<uint32_t>(static_cast<uint32_t>(GgufType::kUint32));
    o.Put<uint32_t>(static_cast<uint32_t>(alignment));
  }
  uint64_t offset = 0;
  for (const GgufTensorDecl& t : tensors) {
    o.PutString(t.name);
    o.Put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) o.Put<uint64_t>(static_cast<uint64_t>(d));
    o.Put<uint32_t>(static_cast<uint32_t>(t.type));
    o.Put<uint64_t>(offset);
    offset += t.bytes;
    offset = (offset + alignment - 1) / alignment * alignment;
  }
  o.PadTo(alignment);
  return std::move(o.str());
}

std::string GgufWriter::Serialize(uint64_t alignment) const {
  std::vector<GgufTensorDecl> decls;
  for (const PendingTensor& t : tensors_) decls.push_back({t.name, t.type, t.ne, t.bytes.size()});
  Out o;
  o.str() = GgufHeader(kv_, decls, alignment);
  for (const PendingTensor& t : tensors_) {
    o.str() += t.bytes;
    o.PadTo(alignment);
  }
  return std::move(o.str());
}

uint64_t GgufTensorBytes(GgmlType type, const std::vector<int64_t>& ne, const std::string& name) {
  int64_t block_elems = 0, block_bytes = 0;
  if (!GgmlTypeLayout(type, &block_elems, &block_bytes)) {
    throw Error("GGUF tensor '" + name + "': type " + GgmlTypeName(type) + " has no known size");
  }
  const int64_t numel = NumElements(ne);
  if (ne.empty() || ne[0] % block_elems != 0) {
    throw Error("GGUF tensor '" + name + "': rows of " +
                (ne.empty() ? std::string("?") : std::to_string(ne[0])) +
                " values are not a whole number of " + GgmlTypeName(type) + " blocks of " +
                std::to_string(block_elems));
  }
  return static_cast<uint64_t>(numel / block_elems * block_bytes);
}

GgufStreamWriter::GgufStreamWriter(std::string path,
                                   const std::vector<std::pair<std::string, GgufValue>>& kv,
                                   std::vector<GgufTensorDecl> tensors, uint64_t alignment)
    : path_(std::move(path)),
      tmp_(path_ + ".tmp-" + std::to_string(::getpid())),
      tensors_(std::move(tensors)),
      alignment_(alignment) {
  for (const GgufTensorDecl& t : tensors_) {
    if (GgufTensorBytes(t.type, t.ne, t.name) != t.bytes) {
      throw Error("GGUF tensor '" + t.name + "': declared with " + std::to_string(t.bytes) +
                  " bytes, its type and shape need " +
                  std::to_string(GgufTensorBytes(t.type, t.ne, t.name)));
    }
  }
  const std::string header = GgufHeader(kv, tensors_, alignment_);
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (file_ == nullptr) {
    throw Error(path_ + ": cannot create " + tmp_ + ": " + std::strerror(errno));
  }
  Put(header.data(), header.size());
}

GgufStreamWriter::~GgufStreamWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(tmp_.c_str());
  }
}

void GgufStreamWriter::Put(const void* data, size_t n) {
  if (n != 0 && std::fwrite(data, 1, n, file_) != n) {
    throw Error(path_ + ": writing " + tmp_ + " failed: " + std::strerror(errno));
  }
  written_ += n;
}

void GgufStreamWriter::Write(const std::string& name, const void* bytes, size_t n) {
  if (next_ >= tensors_.size() || tensors_[next_].name != name || tensors_[next_].bytes != n) {
    throw Error(path_ + ": tensor '" + name + "' (" + std::to_string(n) +
                " bytes) written out of the declared order" +
                (next_ < tensors_.size() ? "; expected '" + tensors_[next_].name + "' (" +
                                               std::to_string(tensors_[next_].bytes) + " bytes)"
                                         : std::string("; every tensor is written")));
  }
  Put(bytes, n);
  const uint64_t pad = (alignment_ - written_ % alignment_) % alignment_;
  static const char kZeros[64] = {};
  for (uint64_t left = pad; left > 0;) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(left, sizeof(kZeros)));
    Put(kZeros, k);
    left -= k;
  }
  ++next_;
}

void GgufStreamWriter::Finish() {
  if (next_ != tensors_.size()) {
    throw Error(path_ + ": " + std::to_string(tensors_.size() - next_) +
                " declared tensors were never written (next: '" + tensors_[next_].name + "')");
  }
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) {
    throw Error(path_ + ": flushing " + tmp_ + " failed: " + std::strerror(errno));
  }
  std::fclose(file_);
  file_ = nullptr;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp_.c_str());
    throw Error(path_ + ": cannot rename " + tmp_ + " into place: " + why);
  }
}

void GgufWriter::WriteFile(const std::string& path, uint64_t alignment) const {
  const std::string image = Serialize(alignment);
  WriteFileAtomic(path, image.data(), image.size());
}

}  // namespace awq
