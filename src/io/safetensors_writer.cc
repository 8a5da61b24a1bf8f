// safetensors writer: single files and transformers-style shards with their index, written
// atomically; and the "5GB"-style size strings that choose the shard size.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "awq/safetensors.h"
#include "core/mapped_file.h"

namespace awq {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// Quoted JSON string; throws awq::Error for text that is not UTF-8 (the header must be).
std::string Quote(const std::string& s, const char* what) {
  try {
    return json(s).dump();
  } catch (const json::exception&) {
    throw Error(std::string("safetensors writer: ") + what + " '" + s + "' is not valid UTF-8");
  }
}

std::string OsError(const std::string& what, const std::string& path) {
  return path + ": " + what + ": " + std::strerror(errno);
}

// transformers' shard names: model-00001-of-00003.safetensors.
std::string ShardName(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

// Position in the reference implementation's Dtype enum (U8 < I8 < F16 < BF16 < I32 < F32 < I64),
// which decides the order of tensors in the files it writes.
int DTypeRank(DType t) {
  switch (t) {
    case DType::kU8:
      return 0;
    case DType::kI8:
      return 1;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 3;
    case DType::kI32:
      return 4;
    case DType::kF32:
      return 5;
    case DType::kI64:
      return 6;
    case DType::kCount:
      break;
  }
  AWQ_CHECK(false && "invalid dtype");
  return -1;
}

bool IsWeightFileName(const std::string& name) {
  static const std::regex kShard("model-[0-9]{5}-of-[0-9]{5}\\.safetensors");
  return name == "model.safetensors" || name == "model.safetensors.index.json" ||
         std::regex_match(name, kShard);
}

}  // namespace

SafetensorsWriter::SafetensorsWriter() { metadata_["format"] = "pt"; }

void SafetensorsWriter::Add(const std::string& name, Tensor tensor) {
  if (name.empty()) throw Error("safetensors writer: empty tensor name");
  if (name == "__metadata__") {
    throw Error("safetensors writer: '__metadata__' is reserved and cannot name a tensor");
  }
  Quote(name, "tensor name");
  if (tensor.empty()) throw Error("safetensors writer: tensor '" + name + "' has no data");
  if (!index_.emplace(name, tensors_.size()).second) {
    throw Error("safetensors writer: tensor '" + name + "' added twice");
  }
  Entry e;
  e.name = name;
  e.dtype = tensor.dtype();
  e.shape = tensor.shape();
  e.nbytes = tensor.nbytes();
  e.tensor = std::move(tensor);
  tensors_.push_back(std::move(e));
}

void SafetensorsWriter::AddFromFile(const std::string& name, DType dtype, const Shape& shape,
                                    const std::string& path, uint64_t offset) {
  if (name.empty()) throw Error("safetensors writer: empty tensor name");
  if (name == "__metadata__") {
    throw Error("safetensors writer: '__metadata__' is reserved and cannot name a tensor");
  }
  Quote(name, "tensor name");
  Entry e;
  e.name = name;
  e.dtype = dtype;
  e.shape = shape;
  e.nbytes = static_cast<uint64_t>(NumElements(shape)) * DTypeSize(dtype);
  if (e.nbytes == 0) throw Error("safetensors writer: tensor '" + name + "' has no data");
  e.path = path;
  e.offset = offset;
  if (!index_.emplace(name, tensors_.size()).second) {
    throw Error("safetensors writer: tensor '" + name + "' added twice");
  }
  tensors_.push_back(std::move(e));
}

void SafetensorsWriter::SetMetadata(const std::string& key, const std::string& value) {
  Quote(key, "metadata key");
  Quote(value, "metadata value");
  metadata_[key] = value;
}

uint64_t SafetensorsWriter::total_bytes() const {
  uint64_t total = 0;
  for (const Entry& e : tensors_) total += e.nbytes;
  return total;
}

void SafetensorsWriter::WriteEntries(const std::string& path,
                                     const std::vector<const Entry*>& entries_in) const {
  // The reference writer's order: by dtype rank, highest first, then by name. The rank grows with
  // the element size, and every size is a power of two, so each tensor starts at a multiple of
  // its own element size.
  std::vector<const Entry*> entries = entries_in;
  std::sort(entries.begin(), entries.end(), [](const Entry* a, const Entry* b) {
    const int ra = DTypeRank(a->dtype), rb = DTypeRank(b->dtype);
    return ra != rb ? ra > rb : a->name < b->name;
  });

  std::string header = "{";
  if (!metadata_.empty()) header += "\"__metadata__\":" + json(metadata_).dump();
  uint64_t offset = 0;
  for (const Entry* e : entries) {
    if (header.size() > 1) header += ",";
    const uint64_t n = e->nbytes;
    header += Quote(e->name, "tensor name") + ":{\"dtype\":\"" + DTypeName(e->dtype) +
              "\",\"shape\":" + json(e->shape).dump() + ",\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + n) + "]}";
    offset += n;
  }
  header += "}";
  // Pad with spaces so that the data buffer starts 8-byte aligned in the file (and in a mapping).
  header.append((8 - header.size() % 8) % 8, ' ');
  const uint64_t header_len = header.size();

  // Streamed rather than assembled in memory: a shard is gigabytes. Written to a temp name and
  // renamed, like WriteFileAtomic, so readers never see half a file.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) throw Error(OsError("cannot create", tmp));
  bool ok = std::fwrite(&header_len, 8, 1, f) == 1 &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size();
  std::string read_error;
  std::vector<char> chunk;
  for (const Entry* e : entries) {
    if (!ok) break;
    if (e->path.empty()) {
      const size_t n = e->nbytes;
      ok = n == 0 || std::fwrite(e->tensor.raw(), 1, n, f) == n;
      continue;
    }
    // A staged file range, copied through a small buffer.
    FILE* in = std::fopen(e->path.c_str(), "rb");
    if (in == nullptr) {
      read_error = OsError("cannot open", e->path);
      ok = false;
      break;
    }
    chunk.resize(size_t{16} << 20);
    uint64_t left = e->nbytes;
    ok = fseeko(in, static_cast<off_t>(e->offset), SEEK_SET) == 0;
    while (ok && left > 0) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(left, chunk.size()));
      if (std::fread(chunk.data(), 1, want, in) != want) {
        read_error = e->path + ": short read of tensor " + e->name + " at byte " +
                     std::to_string(e->offset + (e->nbytes - left));
        ok = false;
        break;
      }
      ok = std::fwrite(chunk.data(), 1, want, f) == want;
      left -= want;
    }
    std::fclose(in);
  }
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    const std::string msg = read_error.empty() ? OsError("cannot write", tmp) : read_error;
    std::remove(tmp.c_str());
    throw Error(msg);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string msg = OsError("cannot rename to " + path, tmp);
    std::remove(tmp.c_str());
    throw Error(msg);
  }
}

void SafetensorsWriter::WriteFile(const std::string& path) const {
  std::vector<const Entry*> all;
  all.reserve(tensors_.size());
  for (const Entry& e : tensors_) all.push_back(&e);
  WriteEntries(path, all);
}

std::vector<std::string> SafetensorsWriter::WriteSharded(const std::string& dir,
                                                         uint64_t max_shard_bytes) const {
  if (max_shard_bytes == 0) throw Error(dir + ": max shard size must be positive, got 0");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create folder: " + ec.message());

  // huggingface_hub's split_torch_state_dict_into_shards: walk the tensors in order, start a new
  // shard when the next one would tip the current over the limit; an oversized tensor gets a
  // shard of its own, emitted at once (before the shard still being filled).
  std::vector<std::vector<const Entry*>> shards;
  std::vector<const Entry*> current;
  uint64_t current_bytes = 0;
  for (const Entry& e : tensors_) {
    const uint64_t n = e.nbytes;
    if (n > max_shard_bytes) {
      shards.push_back({&e});
      continue;
    }
    if (current_bytes + n > max_shard_bytes) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(&e);
    current_bytes += n;
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));

  std::vector<std::string> written;
  if (shards.size() == 1) {
    written.push_back((fs::path(dir) / "model.safetensors").string());
    WriteEntries(written.back(), shards[0]);
  } else {
    json weight_map = json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string name = ShardName(i, shards.size());
      written.push_back((fs::path(dir) / name).string());
      WriteEntries(written.back(), shards[i]);
      for (const Entry* e : shards[i]) weight_map[e->name] = name;
    }
    // transformers: json.dumps(index, indent=2, sort_keys=True) + "\n".
    const json index = {{"metadata", {{"total_size", total_bytes()}}}, {"weight_map", weight_map}};
    const std::string text = index.dump(2) + "\n";
    written.push_back((fs::path(dir) / "model.safetensors.index.json").string());
    WriteFileAtomic(written.back(), text.data(), text.size());
  }

  // Remove what an earlier save left behind: a loader prefers model.safetensors over an index,
  // and an old index would name shards this save did not write.
  std::set<std::string> keep;
  for (const std::string& p : written) keep.insert(fs::path(p).filename().string());
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && IsWeightFileName(name) && keep.count(name) == 0) {
      fs::remove(entry.path(), ec);
    }
  }
  return written;
}

uint64_t ParseByteSize(const std::string& text) {
  const auto fail = [&](const std::string& why) -> uint64_t {
    throw Error("byte size '" + text + "': " + why +
                " (expected an integer with an optional unit: KB, MB, GB, TB = 10^3.. bytes, "
                "KiB, MiB, GiB, TiB = 2^10.. bytes)");
  };
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0) return fail("no number");
  uint64_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    if (__builtin_mul_overflow(value, 10u, &value) ||
        __builtin_add_overflow(value, static_cast<uint64_t>(text[i] - '0'), &value)) {
      return fail("too large");
    }
  }
  const std::string unit = text.substr(digits);
  std::string upper = unit;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));

  struct Unit {
    const char* name;
    uint64_t factor;
  };
  static const Unit kUnits[] = {
      {"", 1},
      {"B", 1},
      {"KB", 1000ull},
      {"MB", 1000ull * 1000},
      {"GB", 1000ull * 1000 * 1000},
      {"TB", 1000ull * 1000 * 1000 * 1000},
      {"KIB", 1ull << 10},
      {"MIB", 1ull << 20},
      {"GIB", 1ull << 30},
      {"TIB", 1ull << 40},
  };
  for (const Unit& u : kUnits) {
    if (upper != u.name) continue;
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(value, u.factor, &bytes)) return fail("too large");
    // transformers.utils.convert_file_size_to_int: "5Gb" (lowercase b) is gigabits.
    const bool bits = unit.size() == 2 && unit[1] == 'b';
    return bits ? bytes / 8 : bytes;
  }
  return fail("unknown unit '" + unit + "'");
}

}  // namespace awq
