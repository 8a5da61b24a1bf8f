// Per-thread scratch buffers for the kernels' fp32 panels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace awq {

// A buffer of at least n floats owned by the calling thread and reused across calls: a fresh
// std::vector per call is an mmap of fresh zeroed pages once it exceeds malloc's threshold
// (128 KiB), and those page faults cost prefill a tenth of its time. Contents are unspecified;
// valid until the same thread asks again for the same slot.
// The pointer is 64-byte aligned (the kernels store panels with aligned vector stores).
template <int Slot = 0>
float* ThreadScratch(size_t n) {
  constexpr size_t kAlign = 64 / sizeof(float);
  static thread_local std::vector<float> buf;
  if (buf.size() < n + kAlign) buf.resize(n + kAlign);
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + ((64 - p % 64) % 64) / sizeof(float);
}

}  // namespace awq
