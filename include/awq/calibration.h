// Calibration data for AWQ: loading text samples (.txt paragraphs, JSONL, folders) or
// pre-tokenized ones (JSONL "input_ids") and turning them into the [n_blocks, seq_len] token
// batch the searches run on (docs/CALIBRATION.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace awq {

class Tokenizer;

// Loads calibration samples from `path`:
//  - a file ending in ".jsonl": one JSON object per line with a "text" string field (blank lines
//    are skipped; any other line that is not such an object, including one with an "input_ids"
//    field, is an awq::Error naming the file, the 1-based line number and the problem);
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

// Pre-tokenized samples: one JSON object per non-blank line with an "input_ids" array of token
// ids, each an integer in [0, 2^31 - 1]; other fields are ignored. A line that is not such an
// object (a "text" field, an empty array, a negative, fractional or too large id, ...) is an
// awq::Error naming `source`, the 1-based line and the problem. Returns the samples in file
// order, possibly none.
std::vector<std::vector<int32_t>> ParseCalibrationIdsJsonl(const std::string& text,
                                                           const std::string& source);

struct CalibrationOptions {
  int64_t max_samples = 128;  // stop after this many accepted samples (> 0)
  int64_t seq_len = 512;      // block length in tokens; longer samples are skipped (> 0)
  uint64_t seed = 42;         // seed of the shuffle (text samples only)
  bool shuffle = true;        // false: take the text samples in the given order
};

struct CalibrationBatch {
  int64_t n_blocks = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> tokens;    // [n_blocks, seq_len] row-major
  int64_t n_samples_used = 0;     // accepted samples, concatenated into `tokens`
  int64_t n_samples_skipped = 0;  // examined but empty after stripping, or longer than seq_len
  int64_t n_tokens_dropped = 0;   // the tail of the concatenation that did not fill a block
  int64_t max_token_id = -1;      // the largest id in `tokens` (-1 when empty), for the caller
                                  // to check against the model's vocab_size
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

// The same batch from pre-tokenized samples, as AutoAWQ's get_calib_dataset does with a list of
// token-id lists: the samples in the given order (never shuffled; options.seed and
// options.shuffle are not used), ids as given (no BOS added), samples longer than seq_len (or
// empty) skipped, stop after max_samples accepted, concatenate, cut into floor(n / seq_len)
// blocks and drop the tail. A negative id, or fewer than seq_len tokens in all, is an awq::Error.
CalibrationBatch BuildCalibrationBatchFromIds(const std::vector<std::vector<int32_t>>& samples,
                                              const CalibrationOptions& options);

// The batch for the calibration data at `path`. A ".jsonl" file whose first non-blank line is an
// object with an "input_ids" field holds pre-tokenized samples:
// BuildCalibrationBatchFromIds(ParseCalibrationIdsJsonl(file)); every line must then have
// "input_ids" and no "text", and the tokenizer is not used. Anything else is exactly
// BuildCalibrationBatch(LoadCalibrationTexts(path), tokenizer, options). Checking max_token_id
// against the model's vocabulary is left to the caller.
CalibrationBatch LoadCalibrationBatch(const std::string& path, const Tokenizer& tokenizer,
                                      const CalibrationOptions& options);

// The permutation BuildCalibrationBatch visits the samples in: Fisher-Yates over 0..n-1 driven by
// std::mt19937_64(seed), j drawn uniformly from [0, i] by rejection sampling on the raw 64-bit
// outputs. std::mt19937_64 is fully specified by the standard and no std distribution is used, so
// the order is the same on every platform and standard library. (The reference shuffles its
// Hugging Face dataset with seed 42; that order cannot be reproduced outside `datasets`.)
std::vector<int64_t> ShuffleOrder(int64_t n, uint64_t seed);

}  // namespace awq
