// Internals of awq::Tokenizer shared by the loaders (GGUF, tokenizer.json), the encoders and the
// exporter: the loader-neutral description (TokenizerSpec) and the lookup tables built from it.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "awq/tokenizer.h"
#include "tokenizer/pretokenizer.h"

namespace awq {

namespace tok {

class SpmModel;

// The two tokenizer algorithms: byte-level BPE over merge ranks (GPT-2, SmolLM2, Llama-3, Qwen2;
// GGUF tokenizer.ggml.model "gpt2") and SentencePiece BPE over piece scores (Gemma, Llama-2;
// GGUF "llama").
enum class ModelKind : uint8_t { kByteLevelBpe, kSentencePieceBpe };

// A token matched in the text before pre-tokenization (Hugging Face's added_tokens; in GGUF the
// CONTROL and USER_DEFINED types).
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = true;      // dropped by Decode(skip_special); not matched without parse_special
  bool lstrip = false;      // swallows the whitespace on its left
  bool rstrip = false;      // swallows the whitespace on its right
  bool normalized = false;  // matched in a second pass (Hugging Face: after normalization)
};

// Everything a loader reads; Tokenizer::Impl derives its tables from it, and the exporter writes
// it back out.
struct TokenizerSpec {
  std::string source;  // file name for messages
  // Which encoder the tables below feed.
  ModelKind kind = ModelKind::kByteLevelBpe;
  std::vector<std::string> vocab;  // id -> stored spelling ("Ġthe"); "" where no entry
  std::vector<uint8_t> in_vocab;   // id -> 1 when the BPE model's vocabulary has the id
  std::vector<std::pair<std::string, std::string>> merges;  // by rank
  std::vector<AddedToken> added;
  std::vector<std::string> patterns;          // pre-tokenizer chain
  nlohmann::ordered_json pre_tokenizer_json;  // the same chain in Hugging Face's spelling
  nlohmann::ordered_json normalizer_json;     // null, or NFC (see FromHfJsonText)
  bool ignore_merges = false;  // a word that is itself in the vocabulary is one token
  int32_t unk_id = -1, bos_id = -1, eos_id = -1, pad_id = -1;
  std::vector<int32_t> prefix_ids, suffix_ids;  // added around the ids by add_special
  std::vector<int32_t> extra_eos_ids;           // end-of-turn ids named by the file
  std::string chat_template;
  int64_t model_max_length = 0;  // 0: unknown

  // SentencePiece BPE only (tokenizer_spm.h): per id the piece score (the higher merges first)
  // and the piece type (tok::PieceType), and whether "▁" is put before the text
  // (sentencepiece's add_dummy_prefix, GGUF tokenizer.ggml.add_space_prefix). `vocab` holds the
  // pieces as sentencepiece spells them, a space as "▁".
  std::vector<float> scores;
  std::vector<uint8_t> piece_types;
  bool add_dummy_prefix = false;
};

// Finds added tokens in text: leftmost match first, the longest among those starting there.
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  AddedTokenMatcher(const std::vector<AddedToken>& tokens, bool normalized, bool with_special);
  bool empty() const { return count_ == 0; }
  // Splits `text` into pieces of plain text (id -1) and matched tokens, in order.
  void Split(std::string_view text, std::vector<std::pair<std::string_view, int32_t>>* out) const;

 private:
  const std::vector<AddedToken>* tokens_ = nullptr;
  std::vector<int32_t> by_first_byte_[256];  // indices into tokens_, longest content first
  size_t count_ = 0;
};

}  // namespace tok

struct Tokenizer::Impl {
  explicit Impl(tok::TokenizerSpec s);
  ~Impl();

  tok::TokenizerSpec spec;
  std::unordered_map<std::string, int32_t> vocab_to_id;  // the BPE model's vocabulary
  std::unordered_map<std::string, int32_t> added_to_id;  // added tokens
  std::vector<std::string> token_text;   // id -> added token content or vocabulary spelling
  std::vector<std::string> token_bytes;  // id -> bytes it decodes to
  std::vector<uint8_t> special;          // id -> 1 for special added tokens
  std::vector<int32_t> eos_ids;
  int32_t byte_ids[256];  // id of the single-byte token of each byte, -1 if missing

  struct Merge {
    int32_t rank;
    int32_t id;  // the merged token
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::unordered_map<uint64_t, Merge> merges;

  tok::PreTokenizer pre;
  // [normalized][with_special]
  tok::AddedTokenMatcher matchers[2][2];

  // Appends the ids of one pre-tokenized word (raw UTF-8 bytes).
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;
  // BPE on the bytes of `word` without the cache.
  void Bpe(std::string_view word, std::vector<int32_t>* out) const;
  void EncodeText(std::string_view text, bool parse_special, std::vector<int32_t>* out) const;

  // The SentencePiece model (spec.kind == kSentencePieceBpe), null for byte-level BPE, whose
  // tables above (merges, pre, byte_ids) then go unused.
  std::unique_ptr<const tok::SpmModel> spm;
  // EncodeText for the SentencePiece model (tokenizer_spm.cc).
  void EncodeSpm(std::string_view text, bool parse_special, std::vector<int32_t>* out) const;

  // Word cache: novels repeat a few thousand words over and over. Short words only; cleared
  // when it grows past kCacheMaxEntries so memory stays bounded on adversarial input.
  static constexpr size_t kCacheMaxWordBytes = 48;
  static constexpr size_t kCacheMaxEntries = 1 << 18;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache;
};

// Builds a Tokenizer from a spec, validating it (merges in the vocabulary, ids in range).
Tokenizer MakeTokenizer(std::shared_ptr<const Tokenizer::Impl> impl);
Tokenizer BuildTokenizer(tok::TokenizerSpec spec);

}  // namespace awq
