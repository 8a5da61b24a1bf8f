// Perplexity over windows of the token stream, each evaluated from a fresh context;
// perplexity = exp(sum of NLL / number of scored tokens). Two protocols:
//  - kAwq (the default): non-overlapping windows of ctx tokens, every position but the last scored
//    (ctx - 1 predictions per window), the tokens fed as they are.
//  - kLlamaCpp: llama.cpp's `llama-perplexity` (tools/perplexity/perplexity.cpp, perplexity()):
//    the same non-overlapping windows ("chunks"), but only the second half of each is scored
//    (positions ctx/2 .. ctx-2 predict the next token: ctx - ctx/2 - 1 predictions per chunk; the
//    first half is context), each chunk's first token is replaced by BOS when the vocabulary adds
//    one, at least 2 * ctx tokens are required, and there are tokens / ctx chunks (fewer with a
//    limit). docs/LLAMACPP_REFERENCE.md compares the two.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace awq {

class Model;

enum class PerplexityProtocol { kAwq, kLlamaCpp };

// "awq" / "llama.cpp"; Parse throws awq::Error for anything else.
const char* PerplexityProtocolName(PerplexityProtocol p);
PerplexityProtocol ParsePerplexityProtocol(const std::string& name);

struct PerplexityOptions {
  int64_t ctx = 2048;       // window length in tokens
  int64_t max_tokens = -1;  // evaluate only this prefix of the tokens (-1: all); for kLlamaCpp
                            // at most max_tokens / ctx chunks (llama-perplexity --chunks)
  PerplexityProtocol protocol = PerplexityProtocol::kAwq;
  // kLlamaCpp only: the id written over each chunk's first token, as llama-perplexity does when
  // the vocabulary adds BOS (Tokenizer::add_bos()); -1 when it does not (the token stays).
  int32_t bos_id = -1;
  // Called after every window with (tokens done, tokens total).
  std::function<void(int64_t, int64_t)> progress;
};

// One window of a run: tokens [start, start + length) fed from a fresh context, with the first
// one replaced by `first_token` when that is >= 0; the logits of positions
// [score_from, length - 1) are scored against the token that follows each.
struct PerplexityWindow {
  int64_t start = 0;
  int64_t length = 0;
  int64_t score_from = 0;
  int32_t first_token = -1;
};

// The windows a run over n_tokens tokens evaluates. Throws awq::Error when there are too few
// tokens (kAwq: fewer than ctx; kLlamaCpp: fewer than 2 * ctx in all, or no whole chunk within
// max_tokens) or ctx is too small to score anything.
std::vector<PerplexityWindow> PlanPerplexityWindows(int64_t n_tokens,
                                                    const PerplexityOptions& options);

struct PerplexityResult {
  double perplexity = 0.0;
  double nll_sum = 0.0;     // natural log
  int64_t n_predicted = 0;  // scored tokens: ctx - 1 per window (kAwq), ctx - ctx/2 - 1 (kLlamaCpp)
  int64_t n_windows = 0;
  int64_t n_tokens = 0;  // tokens fed through the model
  double seconds = 0.0;
  double tokens_per_second = 0.0;
};

// What a perplexity run needs from a model: the logits of every position of a sequence run from
// a fresh context. Tests drive the windowing with toy sources.
class LogitSource {
 public:
  virtual ~LogitSource() = default;
  virtual int64_t vocab_size() const = 0;
  // Runs tokens[0, n) from a fresh context.
  virtual void Run(const int32_t* tokens, int64_t n) = 0;
  // The logits of positions [row0, row0 + rows) of the last Run, row-major [rows, vocab_size()].
  virtual void Logits(int64_t row0, int64_t rows, float* out) = 0;
};

// Throws awq::Error as PlanPerplexityWindows does.
PerplexityResult EvaluatePerplexity(const Model& model, const std::vector<int32_t>& tokens,
                                    const PerplexityOptions& options);
PerplexityResult EvaluatePerplexity(LogitSource& source, const std::vector<int32_t>& tokens,
                                    const PerplexityOptions& options);

}  // namespace awq
