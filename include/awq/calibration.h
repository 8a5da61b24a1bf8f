// Calibration data for AWQ: loading text samples (.txt paragraphs, JSONL, folders) and turning
// them into the [n_blocks, seq_len] token batch the searches run on (docs/CALIBRATION.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace awq {

class Tokenizer;

// Loads calibration samples from `path`:
//  - a file ending in ".jsonl": one JSON object per line with a "text" string field (blank lines
//    are skipped; any other line that is not such an object is an awq::Error naming the file,
//    the 1-based line number and the problem);
//  - any other file: plain UTF-8 text, one sample per paragraph (a maximal run of lines that are
//    not blank, paragraphs separated by blank lines). The line breaks inside a paragraph are kept
//    as "\n": the text is then exactly what `awq eval` feeds the model from the same file, so
//    calibration activations follow the distribution quality is measured on;
//  - a folder: every *.txt and *.jsonl file directly inside it, in byte order of their names.
// An empty result (no samples at all) is an awq::Error naming the path.
std::vector<std::string> LoadCalibrationTexts(const std::string& path);

// The two parsers behind LoadCalibrationTexts, on text already in memory; `source` names the
// input in error messages. They return what they found, possibly nothing.
std::vector<std::string> SplitParagraphs(const std::string& text);
std::vector<std::string> ParseCalibrationJsonl(const std::string& text, const std::string& source);

struct CalibrationOptions {
  int64_t max_samples = 128;  // stop after this many accepted samples (> 0)
  int64_t seq_len = 512;      // block length in tokens; longer samples are skipped (> 0)
  uint64_t seed = 42;         // seed of the shuffle
  bool shuffle = true;        // false: take the samples in the given order
};

struct CalibrationBatch {
  int64_t n_blocks = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> tokens;    // [n_blocks, seq_len] row-major
  int64_t n_samples_used = 0;     // accepted samples, concatenated into `tokens`
  int64_t n_samples_skipped = 0;  // examined but empty after stripping, or longer than seq_len
  int64_t n_tokens_dropped = 0;   // the tail of the concatenation that did not fill a block
};

// AWQ.md section 1 (AutoAWQ's get_calib_dataset): shuffle the samples with `seed` (see
// ShuffleOrder), strip ASCII whitespace from both ends, tokenize with the model's default special
// tokens (tokenizer.Encode(text, true, false)), skip samples that are empty after stripping or
// longer than seq_len tokens, stop after max_samples accepted, concatenate, cut into
// floor(n / seq_len) blocks and drop the tail. Fewer than seq_len tokens in all is an awq::Error
// that says how many there were.
CalibrationBatch BuildCalibrationBatch(const std::vector<std::string>& texts,
                                       const Tokenizer& tokenizer,
                                       const CalibrationOptions& options);

// The permutation BuildCalibrationBatch visits the samples in: Fisher-Yates over 0..n-1 driven by
// std::mt19937_64(seed), j drawn uniformly from [0, i] by rejection sampling on the raw 64-bit
// outputs. std::mt19937_64 is fully specified by the standard and no std distribution is used, so
// the order is the same on every platform and standard library. (The reference shuffles its
// Hugging Face dataset with seed 42; that order cannot be reproduced outside `datasets`.)
std::vector<int64_t> ShuffleOrder(int64_t n, uint64_t seed);

}  // namespace awq
