// Fuzz target for quantization override files: any input must parse into a config that
// validates and resolves every linear's parameters within range, or raise awq::Error.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "awq/error.h"
#include "awq/quant_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  awq::QuantConfig config;
  try {
    awq::ParseQuantOverrides(text, "fuzz.json", &config);
  } catch (const awq::Error&) {
    return 0;  // malformed input is expected
  }
  // What loaded has been validated; re-validating must not throw. Resolving may only refuse a
  // pattern that backtracks past the match limit, with awq::Error.
  config.Validate();
  for (const char* name : {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj",
                           "model.layers.31.mlp.gate_proj", "lm_head", "model.embed_tokens"}) {
    std::optional<awq::QuantParams> p;
    try {
      p = config.ParamsFor(name);
    } catch (const awq::Error&) {
      return 0;
    }
    if (!p) continue;
    if (p->bits < 2 || p->bits > 8) __builtin_trap();
    if (p->group_size != -1 && (p->group_size <= 0 || p->group_size % 8 != 0)) __builtin_trap();
  }
  return 0;
}
