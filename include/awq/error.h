// Error types: user-facing errors (bad files, bad options) and always-on invariant checks.
#pragma once

#include <stdexcept>
#include <string>

namespace awq {

// Something the user got wrong: a malformed file, an unsupported option, a missing tensor.
// The message names the file, the field and the offending value; the CLI prints it and exits
// with status 1.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A broken internal invariant (a bug in awq.cpp, not in the input). Always on, also in release
// builds, because a silent wrong answer is worse than a crash with a location.
[[noreturn]] void CheckFailed(const char* expr, const char* file, int line);

}  // namespace awq

#define AWQ_CHECK(cond)                                         \
  do {                                                          \
    if (!(cond)) ::awq::CheckFailed(#cond, __FILE__, __LINE__); \
  } while (0)
