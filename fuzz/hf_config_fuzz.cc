// Fuzz target for config.json parsing: any input must parse into a config that validates and
// survives a write/parse round trip, or raise awq::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "awq/error.h"
#include "awq/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  awq::ModelConfig config;
  try {
    config = awq::ParseHfConfig(text, "fuzz.json");
  } catch (const awq::Error&) {
    return 0;  // malformed input is expected
  }
  // What parsed must validate and round-trip; an Error here is a bug, so let it escape.
  config.Validate("fuzz.json");
  const awq::ModelConfig again = awq::ParseHfConfig(awq::HfConfigToJson(config), "fuzz2.json");
  if (again.hidden_size != config.hidden_size || again.head_dim != config.head_dim ||
      again.eos_token_ids != config.eos_token_ids ||
      again.rope_scaling.type != config.rope_scaling.type) {
    __builtin_trap();
  }
  return 0;
}
