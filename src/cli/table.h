// Aligned plain-text tables for the CLI's reports (`inspect`, `validate`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace awq::cli {

// Collects rows of cells and prints them with every column padded to its widest cell: the
// first column left-aligned (names), the others right-aligned (numbers).
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // The table as text, one line per row after the header and a rule of dashes.
  std::string Render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// printf-style formatting into a std::string.
std::string Format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// "12.3 MiB", "512.0 KiB", "100 B".
std::string Bytes(int64_t n);

}  // namespace awq::cli
