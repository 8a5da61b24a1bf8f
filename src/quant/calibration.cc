// Calibration samples: .txt paragraphs, JSONL "text" fields, folders of both, pre-tokenized JSONL
// "input_ids" lines, and the token batch.
#include "awq/calibration.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>
#include <system_error>

#include "awq/error.h"
#include "awq/tokenizer.h"
#include "core/mapped_file.h"

namespace awq {

namespace {

constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Python's str.strip() on ASCII text. Unicode spaces (U+00A0, U+3000, ...) are kept: they are
// content for the tokenizer, and stripping them would need UTF-8 decoding for no benefit.
std::string_view StripAscii(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && IsAsciiSpace(s[b])) ++b;
  while (e > b && IsAsciiSpace(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string_view DropBom(std::string_view s) {
  return s.substr(0, kUtf8Bom.size()) == kUtf8Bom ? s.substr(kUtf8Bom.size()) : s;
}

// Calls fn(line, line_number) for every line of `text` (without its "\n" or "\r\n").
template <typename F>
void ForEachLine(std::string_view text, F&& fn) {
  int64_t number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    fn(line, ++number);
    pos = end + 1;
  }
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix.data(), suffix.size()) == 0;
}

std::vector<std::string> LoadFile(const std::string& path) {
  const std::string text = ReadFileToString(path);
  return EndsWith(path, ".jsonl") ? ParseCalibrationJsonl(text, path) : SplitParagraphs(text);
}

// Parses one non-blank JSONL line into an object; `what` says which field it should have.
nlohmann::json ParseObjectLine(std::string_view line, const std::string& where, const char* what) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + "not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) {
    throw Error(where + "expected a JSON object with " + what + " field, got a " +
                std::string(j.type_name()));
  }
  return j;
}

// True when the first non-blank line of a .jsonl text is an object with an "input_ids" field,
// i.e. the file holds pre-tokenized samples. Anything else (including a first line that is not
// valid JSON) goes to the text parser, whose errors then name the line.
bool IsIdsJsonl(const std::string& text) {
  bool decided = false, ids = false;
  ForEachLine(DropBom(text), [&](std::string_view line, int64_t) {
    if (decided || StripAscii(line).empty()) return;
    decided = true;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ids = j.is_object() && j.contains("input_ids");
  });
  return ids;
}

// One element of "input_ids", checked: an integer in [0, 2^31 - 1].
int32_t TokenId(const nlohmann::json& v, size_t k, const std::string& where) {
  const std::string at = where + "input_ids[" + std::to_string(k) + "] ";
  constexpr uint64_t kMaxId = std::numeric_limits<int32_t>::max();
  // nlohmann stores non-negative integers as unsigned and negative ones (and "-0") as signed;
  // integers beyond 64 bits and anything with a fraction or exponent become floats.
  if (v.is_number_integer()) {
    if (!v.is_number_unsigned() && v.get<int64_t>() < 0) {
      throw Error(at + "is " + v.dump() + ", a negative token id");
    }
    const uint64_t id =
        v.is_number_unsigned() ? v.get<uint64_t>() : static_cast<uint64_t>(v.get<int64_t>());
    if (id > kMaxId) {
      throw Error(at + "is " + std::to_string(id) + ", larger than the largest token id " +
                  std::to_string(kMaxId));
    }
    return static_cast<int32_t>(id);
  }
  if (v.is_number_float()) throw Error(at + "is " + v.dump() + ", not an integer token id");
  throw Error(at + "is a " + std::string(v.type_name()) + ", expected an integer token id");
}

// Concatenates the accepted samples' tokens, cuts them into blocks and drops the tail.
// `source` names the input in the error when there is not even one block.
void CutIntoBlocks(std::vector<int32_t> stream, const CalibrationOptions& options,
                   const std::string& source, CalibrationBatch& batch) {
  const int64_t total = static_cast<int64_t>(stream.size());
  if (total < options.seq_len) {
    throw Error(source + ": only " + std::to_string(total) + " tokens from " +
                std::to_string(batch.n_samples_used) + " usable samples (" +
                std::to_string(batch.n_samples_skipped) +
                " skipped as empty or longer than seq_len), fewer than seq_len " +
                std::to_string(options.seq_len) + " needed for one block");
  }
  batch.seq_len = options.seq_len;
  batch.n_blocks = total / options.seq_len;
  batch.n_tokens_dropped = total - batch.n_blocks * options.seq_len;
  stream.resize(static_cast<size_t>(batch.n_blocks * options.seq_len));
  batch.tokens = std::move(stream);
  batch.max_token_id = *std::max_element(batch.tokens.begin(), batch.tokens.end());
}

void CheckOptions(const CalibrationOptions& options) {
  if (options.max_samples <= 0) {
    throw Error("calibration: max_samples must be positive, got " +
                std::to_string(options.max_samples));
  }
  if (options.seq_len <= 0) {
    throw Error("calibration: seq_len must be positive, got " + std::to_string(options.seq_len));
  }
}

// BuildCalibrationBatchFromIds; `source` names the input in the "too few tokens" error.
CalibrationBatch BatchFromIds(const std::vector<std::vector<int32_t>>& samples,
                              const CalibrationOptions& options, const std::string& source) {
  CheckOptions(options);
  CalibrationBatch batch;
  std::vector<int32_t> stream;
  // AutoAWQ 0.2.9 get_calib_dataset with a list of id lists: file order, `len > max_seq_len`
  // skipped (a sample of exactly seq_len is kept), empty skipped, break once n_samples accepted.
  for (size_t i = 0; i < samples.size(); ++i) {
    if (batch.n_samples_used == options.max_samples) break;
    const std::vector<int32_t>& ids = samples[i];
    if (ids.empty() || static_cast<int64_t>(ids.size()) > options.seq_len) {
      ++batch.n_samples_skipped;
      continue;
    }
    for (size_t k = 0; k < ids.size(); ++k) {
      if (ids[k] < 0) {
        throw Error(source + ": sample " + std::to_string(i) + " has the negative token id " +
                    std::to_string(ids[k]) + " at position " + std::to_string(k));
      }
    }
    stream.insert(stream.end(), ids.begin(), ids.end());
    ++batch.n_samples_used;
  }
  CutIntoBlocks(std::move(stream), options, source, batch);
  return batch;
}

}  // namespace

std::vector<std::string> SplitParagraphs(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  bool open = false;
  ForEachLine(DropBom(text), [&](std::string_view line, int64_t) {
    if (StripAscii(line).empty()) {
      if (open) out.push_back(std::move(current));
      current.clear();
      open = false;
      return;
    }
    if (open) current += '\n';
    current.append(line);
    open = true;
  });
  if (open) out.push_back(std::move(current));
  return out;
}

std::vector<std::string> ParseCalibrationJsonl(const std::string& text, const std::string& source) {
  std::vector<std::string> out;
  ForEachLine(DropBom(text), [&](std::string_view line, int64_t number) {
    if (StripAscii(line).empty()) return;
    const std::string where = source + ":" + std::to_string(number) + ": ";
    const nlohmann::json j = ParseObjectLine(line, where, "a \"text\"");
    // A line that could be either kind of sample is refused rather than guessed at.
    if (j.contains("input_ids")) {
      throw Error(where +
                  (out.empty() ? "an \"input_ids\" field where text samples were expected"
                               : "an \"input_ids\" field after lines with \"text\"") +
                  ": pre-tokenized samples are read only from a .jsonl file given as the "
                  "calibration path whose lines all have \"input_ids\" and no \"text\"");
    }
    const auto it = j.find("text");
    if (it == j.end()) throw Error(where + "the object has no \"text\" field");
    if (!it->is_string()) {
      throw Error(where + "field \"text\" is a " + std::string(it->type_name()) +
                  ", expected a string");
    }
    out.push_back(it->get<std::string>());
  });
  return out;
}

std::vector<std::vector<int32_t>> ParseCalibrationIdsJsonl(const std::string& text,
                                                           const std::string& source) {
  std::vector<std::vector<int32_t>> out;
  ForEachLine(DropBom(text), [&](std::string_view line, int64_t number) {
    if (StripAscii(line).empty()) return;
    const std::string where = source + ":" + std::to_string(number) + ": ";
    const nlohmann::json j = ParseObjectLine(line, where, "an \"input_ids\"");
    if (j.contains("text")) {
      throw Error(where +
                  (j.contains("input_ids") ? "both a \"text\" and an \"input_ids\" field"
                                           : "a \"text\" line in a file of pre-tokenized samples") +
                  ": a .jsonl file holds either \"text\" lines or \"input_ids\" lines, not both");
    }
    const auto it = j.find("input_ids");
    if (it == j.end()) throw Error(where + "the object has no \"input_ids\" field");
    if (!it->is_array()) {
      throw Error(where + "field \"input_ids\" is a " + std::string(it->type_name()) +
                  ", expected an array of token ids");
    }
    if (it->empty()) throw Error(where + "field \"input_ids\" is an empty array");
    std::vector<int32_t> ids;
    ids.reserve(it->size());
    for (size_t k = 0; k < it->size(); ++k) ids.push_back(TokenId((*it)[k], k, where));
    out.push_back(std::move(ids));
  });
  return out;
}

std::vector<std::string> LoadCalibrationTexts(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> out;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      const std::string name = entry.path().filename().string();
      if (!entry.is_regular_file(ec)) continue;
      if (EndsWith(name, ".txt") || EndsWith(name, ".jsonl"))
        files.push_back(entry.path().string());
    }
    if (ec) throw Error("calibration data " + path + ": cannot list the folder: " + ec.message());
    // Byte order of the names, so the sample order does not depend on the file system.
    std::sort(files.begin(), files.end());
    if (files.empty()) throw Error("calibration data " + path + ": no .txt or .jsonl files in it");
    for (const std::string& f : files) {
      std::vector<std::string> texts = LoadFile(f);
      out.insert(out.end(), std::make_move_iterator(texts.begin()),
                 std::make_move_iterator(texts.end()));
    }
  } else {
    out = LoadFile(path);
  }
  if (out.empty()) throw Error("calibration data " + path + ": no samples (no text in it)");
  return out;
}

std::vector<int64_t> ShuffleOrder(int64_t n, uint64_t seed) {
  std::vector<int64_t> order(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    // Uniform j in [0, i]: reject the lowest (2^64 mod bound) raw values so that every residue
    // is equally likely (no modulo bias).
    const uint64_t bound = static_cast<uint64_t>(i) + 1;
    const uint64_t threshold = (0 - bound) % bound;
    uint64_t r = rng();
    while (r < threshold) r = rng();
    std::swap(order[i], order[r % bound]);
  }
  return order;
}

CalibrationBatch BuildCalibrationBatch(const std::vector<std::string>& texts,
                                       const Tokenizer& tokenizer,
                                       const CalibrationOptions& options) {
  CheckOptions(options);
  const int64_t n = static_cast<int64_t>(texts.size());
  std::vector<int64_t> order;
  if (options.shuffle) {
    order = ShuffleOrder(n, options.seed);
  } else {
    order.resize(texts.size());
    for (int64_t i = 0; i < n; ++i) order[i] = i;
  }

  CalibrationBatch batch;
  std::vector<int32_t> stream;
  for (const int64_t idx : order) {
    if (batch.n_samples_used == options.max_samples) break;
    const std::string_view text = StripAscii(texts[idx]);
    // Skipped before tokenizing: with a BOS-adding tokenizer an empty text would still give one
    // token, which the reference keeps; a lone BOS carries no calibration signal.
    if (text.empty()) {
      ++batch.n_samples_skipped;
      continue;
    }
    const std::vector<int32_t> ids = tokenizer.Encode(text, /*add_special=*/true,
                                                      /*parse_special=*/false);
    if (ids.empty() || static_cast<int64_t>(ids.size()) > options.seq_len) {
      ++batch.n_samples_skipped;
      continue;
    }
    stream.insert(stream.end(), ids.begin(), ids.end());
    ++batch.n_samples_used;
  }
  CutIntoBlocks(std::move(stream), options, "calibration", batch);
  return batch;
}

CalibrationBatch BuildCalibrationBatchFromIds(const std::vector<std::vector<int32_t>>& samples,
                                              const CalibrationOptions& options) {
  return BatchFromIds(samples, options, "calibration");
}

CalibrationBatch LoadCalibrationBatch(const std::string& path, const Tokenizer& tokenizer,
                                      const CalibrationOptions& options) {
  std::error_code ec;
  if (EndsWith(path, ".jsonl") && !std::filesystem::is_directory(path, ec)) {
    // Read twice when the file holds text (here and in LoadCalibrationTexts); calibration files
    // are small, and the text path then stays exactly BuildCalibrationBatch(LoadCalibrationTexts).
    const std::string text = ReadFileToString(path);
    if (IsIdsJsonl(text)) {
      CheckOptions(options);
      return BatchFromIds(ParseCalibrationIdsJsonl(text, path), options,
                          "calibration data " + path);
    }
  }
  return BuildCalibrationBatch(LoadCalibrationTexts(path), tokenizer, options);
}

}  // namespace awq
