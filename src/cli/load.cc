// Tokenizer and text loading for the CLI.
#include "cli/load.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <iterator>

#include "awq/error.h"
#include "core/mapped_file.h"

namespace awq::cli {

std::string DefaultTextPath(const std::string& name) {
  const char* env = std::getenv("AWQ_ASSETS_DIR");
  const std::string assets = env ? env : std::string(AWQ_SOURCE_DIR) + "/assets";
  return assets + "/text/" + name + ".txt";
}

std::string ReadText(const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  return ReadFileToString(path);
}

int64_t DirBytes(const std::string& dir) {
  int64_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) total += static_cast<int64_t>(e.file_size());
  }
  return total;
}

}  // namespace awq::cli
