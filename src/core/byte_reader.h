// Bounds-checked little-endian reader for binary parsers (GGUF, safetensors, R data).
// Every read names the field it is for, so a truncated or corrupt file gets an error that says
// which field, at which offset, in which file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "awq/error.h"

namespace awq {

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string source)
      : data_(data), size_(size), source_(std::move(source)) {}

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& source() const { return source_; }
  const uint8_t* data() const { return data_; }

  template <class T>
  T Read(const char* field) {
    Need(sizeof(T), field);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  // Big-endian 32-bit integer (R's XDR serialization).
  uint32_t ReadU32BE(const char* field) {
    Need(4, field);
    const uint8_t* p = data_ + pos_;
    pos_ += 4;
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
  }
  std::string_view ReadBytes(uint64_t n, const char* field) {
    Need(n, field);
    std::string_view v(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return v;
  }
  void Skip(uint64_t n, const char* field) {
    Need(n, field);
    pos_ += static_cast<size_t>(n);
  }
  void Seek(uint64_t pos, const char* field) {
    if (pos > size_) {
      Fail(field, "offset " + std::to_string(pos) + " is past the end (size " +
                      std::to_string(size_) + ")");
    }
    pos_ = static_cast<size_t>(pos);
  }
  void Need(uint64_t n, const char* field) const {
    if (n > remaining()) {
      Fail(field, "needs " + std::to_string(n) + " bytes at offset " + std::to_string(pos_) +
                      " but only " + std::to_string(remaining()) + " remain (truncated file?)");
    }
  }
  [[noreturn]] void Fail(const char* field, const std::string& detail) const {
    throw Error(source_ + ": " + field + ": " + detail);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string source_;
};

}  // namespace awq
