// Per-thread scratch buffers for the kernels' fp32 panels.
#pragma once

#include <cstddef>
#include <vector>

namespace awq {

// A buffer of at least n floats owned by the calling thread and reused across calls: a fresh
// std::vector per call is an mmap of fresh zeroed pages once it exceeds malloc's threshold
// (128 KiB), and those page faults cost prefill a tenth of its time. Contents are unspecified;
// valid until the same thread asks again.
inline float* ThreadScratch(size_t n) {
  static thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

}  // namespace awq
