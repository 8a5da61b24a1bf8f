// Fuzz target for the GGUF reader: parse, read every metadata value through the typed getters,
// dequantize every tensor, and check that a file that parsed survives a writer round trip.
// awq::Error is the expected outcome for bad input; anything else (a crash, a sanitizer report,
// another exception, a failed AWQ_CHECK) is a bug.
#include <cstdint>
#include <cstring>
#include <string>

#include "awq/gguf.h"

namespace {

// Calls the getter matching each value's type; wrong-type getters must throw awq::Error.
void TouchMetadata(const awq::GgufFile& f) {
  for (const auto& [key, v] : f.metadata()) {
    try {
      switch (v.type) {
        case awq::GgufType::kString:
          (void)f.GetString(key);
          break;
        case awq::GgufType::kBool:
          (void)f.GetBool(key, false);
          break;
        case awq::GgufType::kFloat32:
        case awq::GgufType::kFloat64:
          (void)f.GetFloat(key);
          break;
        case awq::GgufType::kArray:
          if (v.array_type == awq::GgufType::kString) {
            (void)f.GetStringArray(key);
          } else {
            (void)f.GetFloatArray(key);
            (void)f.GetIntArray(key);
          }
          break;
        default:
          (void)f.GetUint(key);
          (void)f.GetInt(key);
      }
    } catch (const awq::Error&) {
      // Out-of-range integers and wrong array types are reported, as they should be.
    }
  }
}

// The file parsed, so writing it back and parsing the result must work and give the same
// tensors with the same dequantized bytes.
void CheckRoundTrip(const awq::GgufFile& f) {
  awq::GgufWriter w;
  for (const auto& [key, v] : f.metadata()) w.AddMetadata(key, v);
  for (const awq::GgufTensorInfo& t : f.tensors()) {
    w.AddTensor(t.name, t.type, t.ne,
                std::string(reinterpret_cast<const char*>(f.TensorData(t)), t.nbytes));
  }
  const std::string image = w.Serialize(f.alignment());
  const awq::GgufFile g = awq::GgufFile::Parse(reinterpret_cast<const uint8_t*>(image.data()),
                                               image.size(), "round trip");
  AWQ_CHECK(g.metadata().size() == f.metadata().size());
  AWQ_CHECK(g.tensors().size() == f.tensors().size());
  AWQ_CHECK(g.alignment() == f.alignment());
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const awq::GgufTensorInfo& a = f.tensors()[i];
    const awq::GgufTensorInfo& b = g.tensors()[i];
    AWQ_CHECK(a.name == b.name && a.type == b.type && a.ne == b.ne && a.nbytes == b.nbytes);
    AWQ_CHECK(std::memcmp(f.TensorData(a), g.TensorData(b), a.nbytes) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  awq::GgufFile f;
  try {
    f = awq::GgufFile::Parse(data, size, "fuzz.gguf");
  } catch (const awq::Error&) {
    return 0;
  }
  TouchMetadata(f);
  for (const awq::GgufTensorInfo& t : f.tensors()) {
    try {
      const awq::Tensor x = f.ReadF32(t);
      AWQ_CHECK(x.shape() == t.shape());
    } catch (const awq::Error&) {
      AWQ_CHECK(!awq::GgmlCanDequantize(t.type));  // only unsupported types may fail
    }
  }
  CheckRoundTrip(f);
  return 0;
}
