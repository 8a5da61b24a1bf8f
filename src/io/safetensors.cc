// safetensors reader: header validation, zero-copy tensor views, and sharded checkpoint folders.
#include "awq/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "core/byte_reader.h"
#include "core/mapped_file.h"

namespace awq {

namespace {

using nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; awq.cpp reads it in place");

[[noreturn]] void Fail(const std::string& source, const std::string& detail) {
  throw Error(source + ": " + detail);
}

[[noreturn]] void FailTensor(const std::string& source, const std::string& tensor,
                             const std::string& field, const std::string& detail) {
  throw Error(source + ": tensor '" + tensor + "': " + field + ": " + detail);
}

// Parses JSON and rejects duplicate keys in any object. nlohmann (like Python's json) silently
// keeps the last of two equal keys, which would let two readers of one file see different
// tensors; the safetensors reference rejects such headers.
json ParseJsonStrict(std::string_view text, const std::string& where) {
  std::vector<std::set<std::string>> open_objects;  // keys seen so far, one set per open object
  std::string duplicate;
  const json::parser_callback_t callback = [&](int /*depth*/, json::parse_event_t event,
                                               json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() &&
            !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  json root;
  try {
    root = json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    throw Error(where + ": invalid JSON: " + e.what());
  }
  if (!duplicate.empty()) {
    throw Error(where + ": duplicate key '" + duplicate +
                "' (ambiguous: JSON readers keep only one of them)");
  }
  return root;
}

// Element sizes of the dtypes the format defines but awq.cpp does not compute with. Knowing them
// lets a file holding e.g. an F64 buffer load and validate; only reading that tensor fails.
// Sub-byte types (F4, F6_*) are not listed: their size rules differ, so they are unknown dtypes.
bool OtherDTypeSize(const std::string& name, uint64_t* size) {
  static const std::pair<const char*, uint64_t> kOthers[] = {
      {"F64", 8},  {"I16", 2},     {"U16", 2},     {"U32", 4},     {"U64", 8},
      {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1}, {"C64", 8}};
  for (const auto& [n, s] : kOthers) {
    if (name == n) {
      *size = s;
      return true;
    }
  }
  return false;
}

std::string Abbrev(const json& value) {
  std::string s = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Parses one header entry {"dtype", "shape", "data_offsets"} into `info`.
SafetensorsTensorInfo ParseEntry(const std::string& source, const std::string& name,
                                 const json& entry) {
  if (!entry.is_object()) {
    FailTensor(source, name, "entry", "expected an object, got " + Abbrev(entry));
  }
  SafetensorsTensorInfo info;
  info.name = name;

  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) FailTensor(source, name, "dtype", "missing");
  if (!dtype_it->is_string()) {
    FailTensor(source, name, "dtype", "expected a string, got " + Abbrev(*dtype_it));
  }
  info.dtype_name = dtype_it->get<std::string>();
  uint64_t elem_size = 0;
  if (ParseDType(info.dtype_name, &info.dtype)) {
    elem_size = DTypeSize(info.dtype);
  } else if (OtherDTypeSize(info.dtype_name, &elem_size)) {
    info.dtype = DType::kCount;
  } else {
    FailTensor(source, name, "dtype", "unknown dtype '" + info.dtype_name + "'");
  }

  const auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) FailTensor(source, name, "shape", "missing");
  if (!shape_it->is_array()) {
    FailTensor(source, name, "shape", "expected an array, got " + Abbrev(*shape_it));
  }
  uint64_t numel = 1;
  bool numel_overflow = false;
  bool has_zero_dim = false;
  for (const json& d : *shape_it) {
    if (!d.is_number_unsigned() ||
        d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      FailTensor(source, name, "shape",
                 "dimensions must be non-negative integers, got " + Abbrev(*shape_it));
    }
    const uint64_t dim = d.get<uint64_t>();
    info.shape.push_back(static_cast<int64_t>(dim));
    if (__builtin_mul_overflow(numel, dim, &numel)) numel_overflow = true;
    has_zero_dim = has_zero_dim || dim == 0;
  }
  // Tensor (NumElements) rejects shapes whose running product overflows int64 even when a later
  // dimension is 0; reject them here so that the error names the file and the tensor.
  try {
    NumElements(info.shape);
  } catch (const Error&) {
    FailTensor(source, name, "shape", ShapeToString(info.shape) + " overflows a 64-bit size");
  }
  // A zero dimension makes the product 0 even when a partial product overflowed.
  if (has_zero_dim) {
    numel = 0;
    numel_overflow = false;
  }

  const auto off_it = entry.find("data_offsets");
  if (off_it == entry.end()) FailTensor(source, name, "data_offsets", "missing");
  if (!off_it->is_array() || off_it->size() != 2 || !(*off_it)[0].is_number_unsigned() ||
      !(*off_it)[1].is_number_unsigned()) {
    FailTensor(source, name, "data_offsets",
               "expected [begin, end] as non-negative integers, got " + Abbrev(*off_it));
  }
  info.begin = (*off_it)[0].get<uint64_t>();
  info.end = (*off_it)[1].get<uint64_t>();
  if (info.end < info.begin) {
    FailTensor(source, name, "data_offsets", "end < begin in " + Abbrev(*off_it));
  }

  uint64_t expected = 0;
  if (numel_overflow || __builtin_mul_overflow(numel, elem_size, &expected)) {
    FailTensor(source, name, "shape", ShapeToString(info.shape) + " overflows a 64-bit size");
  }
  if (info.end - info.begin != expected) {
    FailTensor(source, name, "data_offsets",
               Abbrev(*off_it) + " spans " + std::to_string(info.end - info.begin) +
                   " bytes but shape " + ShapeToString(info.shape) + " of " + info.dtype_name +
                   " needs " + std::to_string(expected));
  }
  return info;
}

}  // namespace

SafetensorsFile SafetensorsFile::Open(const std::string& path) {
  std::shared_ptr<MappedFile> file = MappedFile::Open(path);
  const uint8_t* data = file->data();
  const size_t size = file->size();
  SafetensorsFile f = FromBuffer(std::move(file), data, size, path);
  f.mapped_ = true;
  return f;
}

SafetensorsFile SafetensorsFile::Parse(const uint8_t* data, size_t size,
                                       const std::string& source) {
  auto copy = std::make_shared<std::vector<uint8_t>>(data, data + size);
  const uint8_t* p = copy->data();
  return FromBuffer(std::move(copy), p, size, source);
}

SafetensorsFile SafetensorsFile::FromBuffer(std::shared_ptr<const void> owner, const uint8_t* data,
                                            size_t size, const std::string& source) {
  ByteReader reader(data, size, source);
  const uint64_t header_len = reader.Read<uint64_t>("header length");
  if (header_len > kSafetensorsMaxHeaderBytes) {
    reader.Fail("header length", std::to_string(header_len) + " bytes exceeds the limit of " +
                                     std::to_string(kSafetensorsMaxHeaderBytes) +
                                     " (corrupt file?)");
  }
  if (header_len > reader.remaining()) {
    reader.Fail("header length", std::to_string(header_len) + " bytes but only " +
                                     std::to_string(reader.remaining()) +
                                     " bytes follow (truncated file?)");
  }
  const std::string_view header = reader.ReadBytes(header_len, "header");
  if (header.empty() || header[0] != '{') {
    Fail(source, "header: must be a JSON object starting with '{'");
  }
  const json root = ParseJsonStrict(header, source + ": header");
  if (!root.is_object()) Fail(source, "header: expected a JSON object");

  SafetensorsFile f;
  f.source_ = source;
  f.owner_ = std::move(owner);
  f.data_ = data + reader.pos();
  f.data_size_ = reader.remaining();
  f.data_offset_ = reader.pos();

  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) {
        Fail(source, "__metadata__: expected an object of strings, got " + Abbrev(value));
      }
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          Fail(source, "__metadata__." + mk + ": values must be strings, got " + Abbrev(mv));
        }
        f.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    SafetensorsTensorInfo info = ParseEntry(source, key, value);
    if (info.end > f.data_size_) {
      FailTensor(source, key, "data_offsets",
                 "[" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                     "] lies outside the data buffer of " + std::to_string(f.data_size_) +
                     " bytes");
    }
    f.infos_.push_back(std::move(info));
  }

  // File order; then no byte may belong to two tensors.
  std::sort(f.infos_.begin(), f.infos_.end(),
            [](const SafetensorsTensorInfo& a, const SafetensorsTensorInfo& b) {
              return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
            });
  const SafetensorsTensorInfo* reach = nullptr;  // the tensor that ends furthest so far
  for (const SafetensorsTensorInfo& info : f.infos_) {
    if (reach != nullptr && info.begin < reach->end) {
      FailTensor(source, info.name, "data_offsets",
                 "[" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                     "] overlaps tensor '" + reach->name + "' [" + std::to_string(reach->begin) +
                     ", " + std::to_string(reach->end) + "]");
    }
    if (reach == nullptr || info.end > reach->end) reach = &info;
  }
  f.names_.reserve(f.infos_.size());
  for (size_t i = 0; i < f.infos_.size(); ++i) {
    f.names_.push_back(f.infos_[i].name);
    f.index_.emplace(f.infos_[i].name, i);
  }
  return f;
}

const SafetensorsTensorInfo* SafetensorsFile::Find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &infos_[it->second];
}

const SafetensorsTensorInfo& SafetensorsFile::Require(const std::string& name) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr) Fail(source_, "tensor '" + name + "' not found");
  return *info;
}

Tensor SafetensorsFile::Get(const std::string& name) const {
  const SafetensorsTensorInfo& info = Require(name);
  if (!info.supported()) {
    FailTensor(source_, name, "dtype",
               info.dtype_name +
                   " is not supported (awq.cpp reads F32, F16, BF16, I32, I64, "
                   "I8, U8)");
  }
  const uint8_t* p = data_ + info.begin;
  if (reinterpret_cast<uintptr_t>(p) % DTypeSize(info.dtype) != 0) {
    // Typed access to a misaligned pointer is undefined behaviour; copy instead.
    Tensor t(info.dtype, info.shape);
    if (info.nbytes() > 0) std::memcpy(t.raw(), p, info.nbytes());
    return t;
  }
  return Tensor::Wrap(info.dtype, info.shape, p, owner_);
}

void SafetensorsFile::ReleasePages(const std::string& name) const {
  const SafetensorsTensorInfo& info = Require(name);
  if (mapped_) MappedFile::DropPages(data_ + info.begin, info.nbytes());
}

Tensor SafetensorsFile::GetF32(const std::string& name) const {
  const SafetensorsTensorInfo& info = Require(name);
  if (info.supported() && info.dtype != DType::kF32 && info.dtype != DType::kF16 &&
      info.dtype != DType::kBF16) {
    FailTensor(source_, name, "dtype",
               info.dtype_name + " cannot be converted to F32 (expected F32, F16 or BF16)");
  }
  return Get(name).ToF32();
}

// ---------------------------------------------------------------------------------------------
// Checkpoint folders.

namespace {

namespace fs = std::filesystem;

constexpr const char* kSingleName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";

// Shard names come from a file we did not write; only plain names inside the folder are allowed
// so that an index cannot point outside it.
bool IsPlainFileName(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\0') == std::string::npos;
}

}  // namespace

SafetensorsCheckpoint SafetensorsCheckpoint::Open(const std::string& path) {
  SafetensorsCheckpoint ck;
  ck.source_ = path;
  std::error_code ec;
  const fs::path dir(path);
  std::string single;
  if (fs::is_regular_file(dir, ec)) {
    single = path;
  } else if (fs::is_directory(dir, ec)) {
    if (fs::exists(dir / kSingleName, ec)) single = (dir / kSingleName).string();
  } else {
    Fail(path, "no such file or folder");
  }

  if (!single.empty()) {
    ck.files_.push_back(SafetensorsFile::Open(single));
    for (const std::string& n : ck.files_[0].names()) ck.where_.emplace(n, 0);
  } else {
    const std::string index_path = (dir / kIndexName).string();
    if (!fs::exists(index_path, ec)) {
      Fail(path, std::string("no ") + kSingleName + " or " + kIndexName + " in this folder");
    }
    const json index = ParseJsonStrict(ReadFileToString(index_path), index_path);
    if (!index.is_object()) Fail(index_path, "expected a JSON object");
    const auto wm_it = index.find("weight_map");
    if (wm_it == index.end()) Fail(index_path, "weight_map: missing");
    if (!wm_it->is_object()) Fail(index_path, "weight_map: expected an object");

    std::map<std::string, std::string> weight_map;  // tensor -> shard file name
    std::set<std::string> shard_names;
    for (const auto& [tensor, shard] : wm_it->items()) {
      if (!shard.is_string() || !IsPlainFileName(shard.get<std::string>())) {
        Fail(index_path, "weight_map." + tensor +
                             ": expected the file name of a shard in the same folder, got " +
                             Abbrev(shard));
      }
      weight_map.emplace(tensor, shard.get<std::string>());
      shard_names.insert(shard.get<std::string>());
    }

    std::map<std::string, size_t> shard_index;
    for (const std::string& shard : shard_names) {
      const std::string shard_path = (dir / shard).string();
      if (!fs::is_regular_file(shard_path, ec)) {
        const auto first = std::find_if(weight_map.begin(), weight_map.end(),
                                        [&](const auto& kv) { return kv.second == shard; });
        Fail(index_path,
             "weight_map." + first->first + ": shard file " + shard_path + " does not exist");
      }
      shard_index.emplace(shard, ck.files_.size());
      ck.files_.push_back(SafetensorsFile::Open(shard_path));
    }

    for (size_t i = 0; i < ck.files_.size(); ++i) {
      const SafetensorsFile& f = ck.files_[i];
      for (const std::string& n : f.names()) {
        const auto [it, inserted] = ck.where_.emplace(n, i);
        if (!inserted) {
          Fail(index_path, "tensor '" + n + "' is stored in two shards: " +
                               ck.files_[it->second].source() + " and " + f.source());
        }
        const auto wm = weight_map.find(n);
        if (wm == weight_map.end()) {
          Fail(index_path,
               "tensor '" + n + "' is stored in " + f.source() + " but missing from weight_map");
        }
        if (shard_index.at(wm->second) != i) {
          Fail(index_path,
               "weight_map." + n + ": says " + wm->second + " but the tensor is in " + f.source());
        }
      }
    }
    for (const auto& [tensor, shard] : weight_map) {
      if (ck.where_.count(tensor) == 0) {
        Fail(index_path, "weight_map." + tensor + ": tensor is absent from its shard " +
                             (dir / shard).string());
      }
    }
  }

  ck.names_.reserve(ck.where_.size());
  for (const auto& kv : ck.where_) ck.names_.push_back(kv.first);
  std::sort(ck.names_.begin(), ck.names_.end());
  return ck;
}

const SafetensorsFile& SafetensorsCheckpoint::FileOf(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) Fail(source_, "tensor '" + name + "' not found in the checkpoint");
  return files_[it->second];
}

const SafetensorsTensorInfo& SafetensorsCheckpoint::Info(const std::string& name) const {
  const SafetensorsTensorInfo* info = FileOf(name).Find(name);
  AWQ_CHECK(info != nullptr);
  return *info;
}

DType SafetensorsCheckpoint::dtype(const std::string& name) const {
  const SafetensorsTensorInfo& info = Info(name);
  if (!info.supported()) {
    FailTensor(FileOf(name).source(), name, "dtype", info.dtype_name + " is not supported");
  }
  return info.dtype;
}

}  // namespace awq
