// Fuzz target for the calibration loaders. The first byte picks the parser: bit 1 set =
// pre-tokenized JSONL ({"input_ids": [...]} per line) cut into blocks; else even = plain text
// split into paragraphs, odd = JSONL with a "text" field per line. awq::Error is the expected
// failure for malformed JSONL; the paragraphs and blocks are checked against their definitions.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "awq/calibration.h"
#include "awq/error.h"

namespace {

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "calibration_fuzz: %s\n", what);
    std::abort();
  }
}

bool Blank(const std::string& line) {
  return line.find_first_not_of(" \t\n\v\f\r") == std::string::npos;
}

// Every paragraph is a run of non-blank lines: it has text, and none of its lines is blank.
void CheckParagraphs(const std::string& text) {
  const std::vector<std::string> paras = awq::SplitParagraphs(text);
  size_t chars = 0;
  for (const std::string& p : paras) {
    Require(!Blank(p), "empty paragraph");
    size_t pos = 0;
    while (pos <= p.size()) {
      size_t end = p.find('\n', pos);
      if (end == std::string::npos) end = p.size();
      Require(!Blank(p.substr(pos, end - pos)), "blank line inside a paragraph");
      pos = end + 1;
    }
    chars += p.size();
  }
  Require(chars <= text.size(), "paragraphs longer than the text");
  // Splitting the paragraphs joined by blank lines gives them back. (Not with a lone "\r": the
  // splitter reads "\r\n" as a line break, so a "\r" that ended up before a "\n" is eaten.)
  if (text.find('\r') != std::string::npos) return;
  std::string joined = "\n";  // a BOM inside the first paragraph stays text
  for (const std::string& p : paras) joined += p + "\n\n";
  Require(awq::SplitParagraphs(joined) == paras, "split(join(paragraphs)) != paragraphs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 2) {
    std::vector<std::vector<int32_t>> samples;
    try {
      samples = awq::ParseCalibrationIdsJsonl(text, "fuzz.jsonl");
    } catch (const awq::Error&) {
      return 0;  // malformed lines are rejected with an error naming the line
    }
    size_t ids = 0;
    for (const auto& s : samples) {
      Require(!s.empty(), "empty sample accepted");
      for (int32_t id : s) Require(id >= 0, "negative id accepted");
      ids += s.size();
    }
    Require(ids <= text.size(), "more ids than bytes");
    awq::CalibrationOptions co;
    co.seq_len = 1 + data[0] / 4 % 16;
    co.max_samples = 1 + data[0] / 64;
    try {
      const awq::CalibrationBatch b = awq::BuildCalibrationBatchFromIds(samples, co);
      Require(b.tokens.size() == static_cast<size_t>(b.n_blocks * co.seq_len), "ragged blocks");
      Require(b.n_blocks > 0, "no blocks without an error");
      for (int32_t id : b.tokens) Require(id <= b.max_token_id, "max_token_id below an id");
    } catch (const awq::Error&) {
      // too few tokens for one block
    }
    return 0;
  }
  if (data[0] & 1) {
    try {
      const std::vector<std::string> texts = awq::ParseCalibrationJsonl(text, "fuzz.jsonl");
      Require(texts.size() <= text.size(), "more samples than bytes");
    } catch (const awq::Error&) {
      // Malformed lines are rejected with an error naming the line.
    }
  } else {
    CheckParagraphs(text);
  }
  return 0;
}
