// SentencePiece BPE (Gemma, Llama-2; GGUF tokenizer.ggml.model "llama"): sentencepiece's
// encoding algorithm (bpe_model.cc) over the vocabulary's pieces, scores and piece types.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer_impl.h"

namespace awq::tok {

// Piece types, numbered as both GGUF's tokenizer.ggml.token_type and sentencepiece's
// ModelProto.SentencePiece.Type number them.
enum PieceType : uint8_t {
  kPieceNormal = 1,
  kPieceUnknown = 2,
  kPieceControl = 3,      // <bos>, <start_of_turn>: never produced from text by sentencepiece
  kPieceUserDefined = 4,  // matched whole in the text, never merged with a neighbour
  kPieceUnused = 5,       // merged like a normal piece, then split back into its two halves
  kPieceByte = 6,         // <0x41>: byte fallback for characters that are no piece
};

// U+2581 "▁", which stands for a space inside pieces.
inline constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";

// The byte of a byte piece ("<0x0A>" -> 10), or -1 when `piece` is not spelled as one.
int ByteOfPiece(std::string_view piece);

// What a piece decodes to: its byte for a byte piece, otherwise its text with "▁" as a space.
std::string SpmPieceBytes(std::string_view piece, uint8_t type);

// The encoder. Encode() reproduces SentencePieceProcessor::Encode for a model with identity
// normalization (Gemma's and Llama-2's): spaces escaped as "▁", an optional "▁" in front,
// user-defined pieces cut out whole (the longest one starting at each position, leftmost first),
// then BPE over the characters in between, repeatedly merging the adjacent pair whose
// concatenation is the highest-scoring piece (the leftmost pair on equal scores), and finally
// byte pieces for every symbol that is no piece.
//
// Speed: the text is cut into words before each "▁" and the words are encoded through a cache.
// That is exact because no merge can cross such a cut: a merged symbol is a piece, so one that
// covered the cut would be a piece with "▁" past its first character, and the cut is skipped
// where the text around it spells one of those (Gemma has a single one, ">▁</").
class SpmModel {
 public:
  // Builds the tables from spec.vocab/scores/piece_types (the caller checked their sizes).
  explicit SpmModel(const TokenizerSpec& spec);
  SpmModel(const SpmModel&) = delete;
  SpmModel& operator=(const SpmModel&) = delete;

  // Appends the ids of `raw`, valid UTF-8 in which no control token is to be matched;
  // `dummy_prefix` puts a "▁" in front of non-empty text.
  void Encode(std::string_view raw, bool dummy_prefix, std::vector<int32_t>* out) const;

  bool byte_fallback() const { return byte_fallback_; }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  // One maximal run of normalized text between user-defined pieces.
  void EncodeRun(std::string_view run, std::vector<int32_t>* out, bool* prev_unk) const;
  void EncodeWord(std::string_view word, std::vector<int32_t>* out, bool* prev_unk) const;
  // The BPE merge loop on one word, without the cache.
  void Bpe(std::string_view word, std::vector<int32_t>* out) const;
  // Appends the id of a final symbol, or its byte pieces (or unk) when it is no piece.
  void EmitPiece(std::string_view piece, std::vector<int32_t>* out) const;
  // An unused piece -> the two halves it was last proposed from within the word.
  using RevMerge =
      std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>>;
  // EmitPiece, splitting unused pieces back into their halves (recursively), as sentencepiece's
  // resegment does.
  void Resegment(std::string_view piece, const RevMerge& rev_merge,
                 std::vector<int32_t>* out) const;
  // False when a piece with an inner "▁" spells the text across run[p] (a "▁").
  bool CanCutBefore(std::string_view run, size_t p) const;

  PieceMap pieces_;    // normal, user-defined and unused pieces: what merges may produce
  PieceMap reserved_;  // control, unknown and byte pieces: looked up first for a final symbol
  std::vector<float> scores_;
  std::vector<uint8_t> types_;
  int32_t unk_id_ = -1;
  int32_t byte_ids_[256];  // id of "<0xXX>", -1 where missing
  bool byte_fallback_ = false;
  bool has_unused_ = false;

  std::vector<AddedToken> user_defined_;  // the matcher points into this
  AddedTokenMatcher user_matcher_;

  struct CrossingPiece {
    std::string piece;
    std::vector<uint32_t> space_offsets;  // byte offsets of its "▁" past the first character
  };
  std::vector<CrossingPiece> crossing_;
  bool cut_words_ = true;  // false when there are too many crossing pieces to check

  // Word cache, as Tokenizer::Impl's: bounded, cleared when full.
  static constexpr size_t kCacheMaxWordBytes = 64;
  static constexpr size_t kCacheMaxEntries = 1 << 18;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace awq::tok
