// Fuzz target for the AWQ checkpoint reader: a folder's quantization settings (config.json's
// quantization_config or quant_config.json) and the packed linears of its safetensors file
// (GEMM, GEMV and awqcpp_packed layouts), dequantized and read as codes. Any input must read or
// raise awq::Error, and what reads must be consistent.
//
// Input: [u16 n1][n1 bytes config.json][u16 n2][n2 bytes quant_config.json][model.safetensors],
// lengths little-endian and cut to what is left; an empty part leaves that file out. The reader
// takes a folder, so the parts are written to a private folder on tmpfs for every input.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "awq/awq_checkpoint.h"
#include "awq/error.h"
#include "awq/safetensors.h"

namespace {

namespace fs = std::filesystem;

// The folder, removed at exit.
struct Folder {
  std::string path;
  Folder() {
    std::error_code ec;
    const fs::path base =
        fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
    path = (base / ("awq-ckpt-fuzz-" + std::to_string(::getpid()))).string();
    fs::create_directories(path);
  }
  ~Folder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Writes `n` bytes to dir/name, or removes it when n == 0.
void Put(const std::string& dir, const char* name, const uint8_t* p, size_t n) {
  const std::string path = dir + "/" + name;
  if (n == 0) {
    std::remove(path.c_str());
    return;
  }
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) __builtin_trap();
  if (std::fwrite(p, 1, n, f) != n) __builtin_trap();
  std::fclose(f);
}

// Takes a u16-prefixed part off the front of [*p, *p + *n).
std::pair<const uint8_t*, size_t> Part(const uint8_t** p, size_t* n) {
  if (*n < 2) {
    *p += *n;
    *n = 0;
    return {*p, 0};
  }
  size_t len = static_cast<size_t>((*p)[0]) | static_cast<size_t>((*p)[1]) << 8;
  *p += 2;
  *n -= 2;
  if (len > *n) len = *n;
  const uint8_t* at = *p;
  *p += len;
  *n -= len;
  return {at, len};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Folder folder;
  const std::string& dir = folder.path;
  const auto config = Part(&data, &size);
  const auto legacy = Part(&data, &size);
  Put(dir, "config.json", config.first, config.second);
  Put(dir, "quant_config.json", legacy.first, legacy.second);
  Put(dir, "model.safetensors", data, size);

  std::optional<awq::QuantConfig> qc;
  try {
    qc = awq::ReadAwqQuantConfig(dir);
  } catch (const awq::Error&) {
    return 0;  // malformed settings are expected
  }
  if (!qc) return 0;
  // What was accepted resolves every module within range.
  for (const char* name : {"model.layers.0.mlp.down_proj", "model.layers.0.self_attn.q_proj"}) {
    const std::optional<awq::QuantParams> p = qc->ParamsFor(name);
    if (p && (p->bits < 2 || p->bits > 8)) __builtin_trap();
  }
  try {
    const awq::SafetensorsCheckpoint ckpt = awq::SafetensorsCheckpoint::Open(dir);
    for (const std::string& name : ckpt.names()) {
      const std::string suffix = ".qweight";
      if (name.size() <= suffix.size() ||
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
        continue;
      }
      const std::string module = name.substr(0, name.size() - suffix.size());
      try {
        const awq::QuantizedLinear q = awq::ReadAwqLinear(ckpt, module, *qc);
        if (static_cast<int64_t>(q.q.size()) != q.out * q.in) __builtin_trap();
        if (static_cast<int64_t>(q.scales.size()) != q.out * q.n_groups()) __builtin_trap();
        const int max_code = (1 << q.params.bits) - 1;
        for (uint8_t c : q.q) {
          if (c > max_code) __builtin_trap();
        }
        const awq::Tensor w = awq::DequantizeAwqWeight(ckpt, module, *qc);
        if (w.ndim() != 2 || w.dim(0) != q.out || w.dim(1) != q.in) __builtin_trap();
      } catch (const awq::Error&) {
        // Wrong shapes, dtypes or settings for this linear are expected.
      }
    }
  } catch (const awq::Error&) {
    // A malformed safetensors file is expected.
  }
  return 0;
}
