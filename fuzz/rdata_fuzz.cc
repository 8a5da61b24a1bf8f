// Fuzz target for the R serialization reader and the lazy-load entry inflater.
// The first byte picks the path: even = a raw serialization, odd = an .rdb entry (length prefix
// + zlib stream) whose inflated bytes are then parsed, as ReadRLazyLoadStrings does.
#include <cstddef>
#include <cstdint>
#include <string>

#include "awq/error.h"
#include "awq/rdata.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool entry = data[0] & 1;
  try {
    awq::RObject o;
    if (entry) {
      const std::string raw = awq::InflateRLazyLoadEntry(data + 1, size - 1, "fuzz.rdb");
      o = awq::ParseRSerialization(reinterpret_cast<const uint8_t*>(raw.data()), raw.size(),
                                   "fuzz.rdb");
    } else {
      o = awq::ParseRSerialization(data + 1, size - 1, "fuzz.rds");
    }
    // Walk the accessors so that an inconsistent object shows up here, not in a caller.
    (void)o.size();
    (void)o.Names();
    (void)o.Attribute("names");
  } catch (const awq::Error&) {
    // Malformed input is expected to be rejected with awq::Error.
  }
  return 0;
}
