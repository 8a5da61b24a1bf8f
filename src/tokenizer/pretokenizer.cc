// Regex pre-tokenizer on PCRE2: compiles each pattern once (with JIT when available) and splits
// text in Hugging Face's "Isolated" behaviour.
#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "awq/error.h"

namespace awq::tok {
namespace {

std::string PcreMessage(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

// Bytes in the UTF-8 character starting with `lead`; used to step over empty matches.
size_t CharLen(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  return 4;
}

}  // namespace

SplitRegex::SplitRegex(const std::string& pattern, const std::string& source) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  // UTF: the subject is UTF-8 text; UCP: \s, \d, \w and POSIX classes use Unicode properties, as
  // Oniguruma (Hugging Face's engine) does for these patterns.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
  if (code == nullptr) {
    throw Error(source + ": pre-tokenizer pattern \"" + pattern + "\" does not compile at offset " +
                std::to_string(err_offset) + ": " + PcreMessage(err));
  }
  // A failed JIT compile (no JIT support on this platform) leaves the interpreter, which gives the
  // same matches, only slower.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

SplitRegex::~SplitRegex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void PreTokenizer::AddPattern(const std::string& pattern, const std::string& source) {
  steps_.push_back(std::make_unique<SplitRegex>(pattern, source));
}

PreTokenizer::Session::Session(const PreTokenizer& pre) : pre_(pre) {
  for (const auto& step : pre.steps_) {
    match_data_.push_back(
        pcre2_match_data_create_from_pattern(static_cast<pcre2_code*>(step->code()), nullptr));
    AWQ_CHECK(match_data_.back() != nullptr);
  }
  // The default 32 KiB JIT stack is enough for these patterns on ordinary text; a larger one
  // keeps pathological inputs (megabytes of one character class) from failing.
  auto* ctx = pcre2_match_context_create(nullptr);
  AWQ_CHECK(ctx != nullptr);
  auto* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  if (stack != nullptr) pcre2_jit_stack_assign(ctx, nullptr, stack);
  match_context_ = ctx;
  jit_stack_ = stack;
}

PreTokenizer::Session::~Session() {
  for (void* md : match_data_) pcre2_match_data_free(static_cast<pcre2_match_data*>(md));
  pcre2_match_context_free(static_cast<pcre2_match_context*>(match_context_));
  if (jit_stack_ != nullptr) pcre2_jit_stack_free(static_cast<pcre2_jit_stack*>(jit_stack_));
}

void PreTokenizer::Session::Split(std::string_view text, const WordFn& fn) {
  if (text.empty()) return;
  if (pre_.steps_.empty()) {
    fn(text);
    return;
  }
  SplitStep(0, text, fn);
}

void PreTokenizer::Session::SplitStep(size_t step, std::string_view text, const WordFn& fn) {
  const size_t next = step + 1;
  auto emit = [&](std::string_view word) {
    if (word.empty()) return;
    if (next == pre_.steps_.size()) {
      fn(word);
    } else {
      SplitStep(next, word, fn);
    }
  };
  auto* code = static_cast<pcre2_code*>(pre_.steps_[step]->code());
  auto* md = static_cast<pcre2_match_data*>(match_data_[step]);
  auto* ctx = static_cast<pcre2_match_context*>(match_context_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t gap_start = 0;  // end of the previous match: text before the next match is a word too
  size_t offset = 0;
  while (offset < n) {
    // The subject is the word alone, so lookarounds such as (?!\S) see its end, not the text
    // after it, as in Hugging Face. The caller guarantees valid UTF-8, so skip the check.
    const int rc = pcre2_match(code, subject, n, offset, PCRE2_NO_UTF_CHECK, md, ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      throw Error("pre-tokenizer pattern \"" + pre_.steps_[step]->pattern() + "\" failed on a " +
                  std::to_string(n) + "-byte word: " + PcreMessage(rc));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t start = ov[0], end = ov[1];
    if (end == start) {
      // An empty match splits nothing; move on by one character.
      if (start >= n) break;
      offset = start + CharLen(static_cast<unsigned char>(text[start]));
      continue;
    }
    emit(text.substr(gap_start, start - gap_start));
    emit(text.substr(start, end - start));
    gap_start = offset = end;
  }
  emit(text.substr(gap_start));
}

}  // namespace awq::tok
