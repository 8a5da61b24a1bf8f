// Shared loading helpers of the subcommands: the tokenizer that goes with a model path.
#pragma once

#include <cstdint>
#include <string>

#include "awq/tokenizer.h"

namespace awq::cli {

// assets/text/<name>.txt of the source tree, or of $AWQ_ASSETS_DIR when set: the default
// texts of `inspect` (calibration) and `validate`.
std::string DefaultTextPath(const std::string& name);

// Reads a text file; "-" reads standard input.
std::string ReadText(const std::string& path);

// Bytes of every regular file under `dir` (a written checkpoint's size on disk).
int64_t DirBytes(const std::string& dir);

// Bytes as MiB, for reports.
inline double Mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace awq::cli
