// Aligned plain-text tables and number formatting for the CLI's reports.
#include "cli/table.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>

namespace awq::cli {

std::string Table::Render() const {
  std::vector<size_t> width(header_.size(), 0);
  auto widen = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  };
  widen(header_);
  for (const auto& r : rows_) widen(r);
  auto line = [&](const std::vector<std::string>& row) {
    std::string out;
    for (size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      const std::string pad(width[i] - std::min(width[i], cell.size()), ' ');
      if (i > 0) out += "  ";
      out += i == 0 ? cell + pad : pad + cell;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string text = line(header_);
  size_t total = 0;
  for (size_t w : width) total += w;
  text += std::string(total + 2 * (width.empty() ? 0 : width.size() - 1), '-') + "\n";
  for (const auto& r : rows_) text += line(r);
  return text;
}

std::string Format(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

std::string Bytes(int64_t n) {
  const double v = static_cast<double>(n);
  if (n >= (int64_t{1} << 30)) return Format("%.2f GiB", v / (1 << 30));
  if (n >= (int64_t{1} << 20)) return Format("%.1f MiB", v / (1 << 20));
  if (n >= (int64_t{1} << 10)) return Format("%.1f KiB", v / (1 << 10));
  return Format("%lld B", static_cast<long long>(n));
}

}  // namespace awq::cli
