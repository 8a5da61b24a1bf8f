// Fuzz target for the safetensors parser: any input must parse or raise awq::Error; every tensor
// that parses must be readable in its dtype and, for float dtypes, convertible to F32.
#include <cstddef>
#include <cstdint>

#include "awq/error.h"
#include "awq/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const awq::SafetensorsFile f = awq::SafetensorsFile::Parse(data, size, "fuzz.safetensors");
    for (const std::string& name : f.names()) {
      const awq::SafetensorsTensorInfo* info = f.Find(name);
      if (info == nullptr) __builtin_trap();  // names() and Find() disagree
      try {
        const awq::Tensor t = f.Get(name);
        // Touch every byte so that a view past the buffer shows up under ASan.
        const auto* p = static_cast<const uint8_t*>(t.raw());
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < t.nbytes(); ++i) sink = sink ^ p[i];
        if (t.nbytes() != info->nbytes()) __builtin_trap();
        const awq::Tensor f32 = f.GetF32(name);
        if (f32.numel() != t.numel()) __builtin_trap();
      } catch (const awq::Error&) {
        // Unsupported dtypes, and F32 conversion of integer tensors, are expected errors.
      }
    }
  } catch (const awq::Error&) {
    // Malformed input is expected.
  }
  return 0;
}
