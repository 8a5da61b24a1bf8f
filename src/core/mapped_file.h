// Read-only memory-mapped files: weights are paged in on demand and never copied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace awq {

class MappedFile {
 public:
  // Maps the whole file read-only. Throws awq::Error naming the path and the OS error.
  static std::shared_ptr<MappedFile> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Drops this process's resident pages of [p, p + n), a range inside some read-only file
  // mapping: the page cache keeps them and a later read faults them back in with the same bytes.
  // Streaming readers call it so that reading a checkpoint larger than memory does not grow the
  // resident set. Never call it on anonymous memory (its contents would be lost).
  static void DropPages(const void* p, size_t n);

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole file into a string. Throws awq::Error naming the path.
std::string ReadFileToString(const std::string& path);

// Writes `data` to `path` atomically: to "<path>.tmp.<pid>" first, then rename(2), so a reader
// never sees a half-written file. Throws awq::Error naming the path.
void WriteFileAtomic(const std::string& path, const void* data, size_t size);

}  // namespace awq
