// Implementation of the always-on invariant check.
#include "awq/error.h"

#include <cstdio>
#include <cstdlib>

namespace awq {

void CheckFailed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "awq: internal error: check failed: %s at %s:%d\n", expr, file, line);
  std::abort();
}

}  // namespace awq
