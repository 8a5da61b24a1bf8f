// Regex pre-tokenizer: splits text into words before BPE, as a chain of PCRE2 patterns in
// Hugging Face's "Isolated" split behaviour (each match and each gap between matches is a word).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace awq::tok {

// The patterns, spelled as Hugging Face ships them (Oniguruma syntax that PCRE2 accepts).
// GPT-2's, used by ByteLevel(use_regex=true).
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama-3's (and tiktoken's cl100k): case-insensitive contractions, digits in groups of three.
inline constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2's: as Llama-3's but single digits.
inline constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Digits(individual_digits=true) and Digits(individual_digits=false).
inline constexpr const char* kDigitPattern = R"(\p{N})";
inline constexpr const char* kDigitsPattern = R"(\p{N}+)";

// One compiled pattern (UTF + UCP mode, JIT-compiled when PCRE2 has a JIT).
class SplitRegex {
 public:
  // Throws awq::Error naming `source` and the pattern when it does not compile.
  SplitRegex(const std::string& pattern, const std::string& source);
  ~SplitRegex();
  SplitRegex(const SplitRegex&) = delete;
  SplitRegex& operator=(const SplitRegex&) = delete;

  const std::string& pattern() const { return pattern_; }
  void* code() const { return code_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
};

// A chain of patterns applied in order: every word the first produces is split by the second,
// and so on. Matching state lives in a Session so one PreTokenizer serves many threads.
class PreTokenizer {
 public:
  PreTokenizer() = default;
  void AddPattern(const std::string& pattern, const std::string& source);
  bool empty() const { return steps_.empty(); }
  size_t size() const { return steps_.size(); }
  const std::string& pattern(size_t i) const { return steps_[i]->pattern(); }

  using WordFn = std::function<void(std::string_view)>;

  // Per-call matching buffers. `text` given to Split must be valid UTF-8.
  class Session {
   public:
    explicit Session(const PreTokenizer& pre);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    // Calls `fn` with each word of `text` in order (views into `text`, never empty).
    void Split(std::string_view text, const WordFn& fn);

   private:
    void SplitStep(size_t step, std::string_view text, const WordFn& fn);
    const PreTokenizer& pre_;
    std::vector<void*> match_data_;  // pcre2_match_data_8*, one per step
    void* match_context_ = nullptr;  // pcre2_match_context_8*
    void* jit_stack_ = nullptr;      // pcre2_jit_stack_8*
  };

 private:
  std::vector<std::unique_ptr<SplitRegex>> steps_;
};

}  // namespace awq::tok
