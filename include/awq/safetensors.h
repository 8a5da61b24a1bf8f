// safetensors files: a validating zero-copy reader, a writer, and Hugging Face checkpoint
// folders (one model.safetensors, or shards listed in model.safetensors.index.json).
//
// On-disk layout (https://github.com/huggingface/safetensors):
//   [8 bytes]  N, little-endian uint64: length of the JSON header
//   [N bytes]  JSON: {"__metadata__": {str: str}, "<tensor>": {"dtype": "F32",
//              "shape": [2, 3], "data_offsets": [begin, end]}, ...}, padded with spaces
//   [rest]     the data buffer; each tensor's bytes are [begin, end) relative to its start,
//              row-major, little-endian.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "awq/tensor.h"

namespace awq {

// The header is JSON that we parse in full; anything larger than this is not a real checkpoint
// header but a corrupt length field (the reference implementation uses the same bound).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsTensorInfo {
  std::string name;
  // The dtype string as written in the file: "F32", "BF16", ... also dtypes that awq.cpp does
  // not compute with ("F64", "BOOL", "F8_E4M3", ...), which load but cannot be read.
  std::string dtype_name;
  // kCount when dtype_name is not one of F32/F16/BF16/I32/I64/I8/U8.
  DType dtype = DType::kCount;
  Shape shape;
  // Byte range [begin, end) relative to the start of the data buffer.
  uint64_t begin = 0;
  uint64_t end = 0;

  bool supported() const { return IsValid(dtype); }
  uint64_t nbytes() const { return end - begin; }
};

// One .safetensors file. Cheap to copy: copies share the mapping.
class SafetensorsFile {
 public:
  // Memory-maps `path` and validates the header. Throws awq::Error naming the file, the tensor,
  // the field and the offending value.
  static SafetensorsFile Open(const std::string& path);
  // Validates and indexes an in-memory file (a copy is kept, so `data` may be freed afterwards).
  // `source` names the data in errors.
  static SafetensorsFile Parse(const uint8_t* data, size_t size, const std::string& source);

  const std::string& source() const { return source_; }
  // Tensor names in file order (ascending data offset).
  const std::vector<std::string>& names() const { return names_; }
  size_t size() const { return infos_.size(); }
  // nullptr when there is no such tensor.
  const SafetensorsTensorInfo* Find(const std::string& name) const;
  // The tensor in its stored dtype: a view into the mapping, which it keeps alive. A tensor whose
  // bytes are not aligned to its element size (legal in the format, never written by the
  // reference writer) is returned as an aligned copy instead.
  Tensor Get(const std::string& name) const;
  // An owned F32 copy of an F32, F16 or BF16 tensor.
  Tensor GetF32(const std::string& name) const;
  // The "__metadata__" map (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Size of the data buffer in bytes.
  uint64_t data_size() const { return data_size_; }
  // Where the data buffer starts in the file (8 + header length).
  uint64_t data_offset() const { return data_offset_; }
  // Drops the resident pages of `name`'s bytes when the file is memory-mapped (nothing for a
  // parsed copy): streaming readers call it after converting a tensor, so that reading a
  // checkpoint larger than memory does not grow the resident set.
  void ReleasePages(const std::string& name) const;

 private:
  static SafetensorsFile FromBuffer(std::shared_ptr<const void> owner, const uint8_t* data,
                                    size_t size, const std::string& source);
  const SafetensorsTensorInfo& Require(const std::string& name) const;

  std::string source_;
  std::shared_ptr<const void> owner_;  // keeps `data_` alive (a MappedFile or a byte copy)
  const uint8_t* data_ = nullptr;      // start of the data buffer
  uint64_t data_size_ = 0;
  uint64_t data_offset_ = 0;
  bool mapped_ = false;                       // owner_ is a MappedFile
  std::vector<SafetensorsTensorInfo> infos_;  // file order
  std::vector<std::string> names_;            // file order
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A Hugging Face model folder: model.safetensors, or model.safetensors.index.json whose
// "weight_map" names the shard holding each tensor. Like transformers, a single
// model.safetensors wins when both are present.
class SafetensorsCheckpoint {
 public:
  // `path` is a model folder or a single .safetensors file. Throws awq::Error naming the files:
  // no weights found, a missing shard, a tensor listed in the index but absent from its shard,
  // a tensor stored in two shards or in a shard the index does not name for it.
  static SafetensorsCheckpoint Open(const std::string& path);

  bool Has(const std::string& name) const { return where_.count(name) != 0; }
  // All tensor names, sorted.
  const std::vector<std::string>& names() const { return names_; }
  // The shards (one element for a single file).
  const std::vector<SafetensorsFile>& files() const { return files_; }
  // The file that holds `name`.
  const SafetensorsFile& FileOf(const std::string& name) const;
  const SafetensorsTensorInfo& Info(const std::string& name) const;
  Tensor Get(const std::string& name) const { return FileOf(name).Get(name); }
  Tensor GetF32(const std::string& name) const { return FileOf(name).GetF32(name); }
  // Throws awq::Error when the tensor's dtype is one awq.cpp does not support.
  DType dtype(const std::string& name) const;
  const Shape& shape(const std::string& name) const { return Info(name).shape; }
  // The folder (or the file, when opened from one); names the checkpoint in errors.
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::vector<SafetensorsFile> files_;
  std::unordered_map<std::string, size_t> where_;  // tensor name -> index into files_
  std::vector<std::string> names_;
};

// Collects tensors and writes them as safetensors, byte-compatible with the reference writer:
// tensors ordered by element size (largest first) then name, so every tensor is aligned to its
// element size; header padded with spaces to a multiple of 8.
class SafetensorsWriter {
 public:
  // Starts with metadata {"format": "pt"}, which transformers expects when loading.
  SafetensorsWriter();

  // Shares the tensor's storage (no copy); the tensor must not change until written.
  // Throws awq::Error for a duplicate or empty name, or "__metadata__".
  void Add(const std::string& name, Tensor tensor);
  // A tensor whose bytes are read from `path` at byte `offset` when written (copied in chunks,
  // never mapped), so a checkpoint can be assembled from staged files in bounded memory.
  void AddFromFile(const std::string& name, DType dtype, const Shape& shape,
                   const std::string& path, uint64_t offset);
  void SetMetadata(const std::string& key, const std::string& value);
  size_t size() const { return tensors_.size(); }
  // Sum of the tensors' data bytes ("total_size" of the index).
  uint64_t total_bytes() const;

  // Writes every tensor to one file, atomically (a temp file renamed into place).
  void WriteFile(const std::string& path) const;
  // Writes `dir`/model.safetensors when everything fits into max_shard_bytes, else
  // model-00001-of-0000N.safetensors ... plus model.safetensors.index.json, splitting like
  // transformers (tensors in the order added; a tensor larger than the limit gets a shard of its
  // own). Weight files of an earlier save in `dir` that this save does not write are removed, so
  // a stale model.safetensors cannot shadow the new shards. Returns the paths written.
  std::vector<std::string> WriteSharded(const std::string& dir, uint64_t max_shard_bytes) const;

 private:
  struct Entry {
    std::string name;
    Tensor tensor;  // empty for a file range
    DType dtype = DType::kF32;
    Shape shape;
    uint64_t nbytes = 0;
    std::string path;  // the file range's file, or empty
    uint64_t offset = 0;
  };
  void WriteEntries(const std::string& path, const std::vector<const Entry*>& entries) const;

  std::vector<Entry> tensors_;  // in the order added
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Parses a size like transformers' max_shard_size: "5GB" (10^9), "500MB", "2GiB" (2^30), "64KiB",
// or plain bytes "1024". As in transformers, a decimal unit ending in a lowercase "b" means
// bits ("8Gb" == 1GB). Throws awq::Error naming the text.
uint64_t ParseByteSize(const std::string& text);

}  // namespace awq
