// SentencePiece BPE encoding: normalization, user-defined pieces, the score-ordered merge loop
// of sentencepiece's bpe_model.cc, byte fallback, and the word cache that keeps long texts fast.
#include "tokenizer/tokenizer_spm.h"

#include <algorithm>
#include <queue>

namespace awq::tok {
namespace {

// sentencepiece's OneCharLen: the length of a UTF-8 character from its first byte.
size_t OneCharLen(char c) {
  return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[static_cast<uint8_t>(c) >> 4];
}

bool IsSpaceSymbolAt(std::string_view s, size_t i) {
  return s.compare(i, kSpaceSymbol.size(), kSpaceSymbol) == 0;
}

// Past this many pieces with an inner "▁", checking every cut would cost more than the cache
// saves; the text is then encoded run by run, as sentencepiece does.
constexpr size_t kMaxCrossingPieces = 64;

}  // namespace

int ByteOfPiece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int value = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = piece[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

std::string SpmPieceBytes(std::string_view piece, uint8_t type) {
  if (type == kPieceByte) {
    const int b = ByteOfPiece(piece);
    if (b >= 0) return std::string(1, static_cast<char>(b));
  }
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    if (IsSpaceSymbolAt(piece, i)) {
      out.push_back(' ');
      i += kSpaceSymbol.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}

SpmModel::SpmModel(const TokenizerSpec& spec) : scores_(spec.scores), types_(spec.piece_types) {
  const size_t n = spec.vocab.size();
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  pieces_.reserve(n * 2);
  int bytes_found = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    const std::string& piece = spec.vocab[i];
    const uint8_t type = types_[i];
    if (piece.empty()) continue;
    const bool mergeable =
        type == kPieceNormal || type == kPieceUserDefined || type == kPieceUnused;
    // The first of two equal spellings wins, as for sentencepiece (which refuses such a model).
    (mergeable ? pieces_ : reserved_).emplace(piece, id);
    if (type == kPieceUnused) has_unused_ = true;
    if (type == kPieceUserDefined) {
      AddedToken t;
      t.id = id;
      t.content = piece;
      t.special = false;
      user_defined_.push_back(std::move(t));
    }
    if (type == kPieceByte) {
      const int b = ByteOfPiece(piece);
      if (b >= 0 && byte_ids_[b] < 0) {
        byte_ids_[b] = id;
        ++bytes_found;
      }
    }
    if (mergeable && type != kPieceUserDefined) {
      // User-defined pieces are left out: merges never produce one, since a user-defined piece
      // spelled by the text is cut out whole before merging starts.
      CrossingPiece c;
      for (size_t at = piece.find(kSpaceSymbol, 1); at != std::string::npos;
           at = piece.find(kSpaceSymbol, at + 1)) {
        c.space_offsets.push_back(static_cast<uint32_t>(at));
      }
      if (!c.space_offsets.empty()) {
        c.piece = piece;
        crossing_.push_back(std::move(c));
      }
    }
  }
  unk_id_ = spec.unk_id;
  if (unk_id_ < 0) {
    for (size_t i = 0; i < n; ++i) {
      if (types_[i] == kPieceUnknown) {
        unk_id_ = static_cast<int32_t>(i);
        break;
      }
    }
  }
  byte_fallback_ = bytes_found > 0;
  cut_words_ = crossing_.size() <= kMaxCrossingPieces;
  user_matcher_ = AddedTokenMatcher(user_defined_, /*normalized=*/false, /*with_special=*/false);
}

bool SpmModel::CanCutBefore(std::string_view run, size_t p) const {
  for (const CrossingPiece& c : crossing_) {
    for (const uint32_t k : c.space_offsets) {
      if (p < k || p - k + c.piece.size() > run.size()) continue;
      if (run.compare(p - k, c.piece.size(), c.piece) == 0) return false;
    }
  }
  return true;
}

void SpmModel::EmitPiece(std::string_view piece, std::vector<int32_t>* out) const {
  // sentencepiece's PieceToId looks in the reserved pieces first.
  const auto r = reserved_.find(piece);
  if (r != reserved_.end()) {
    out->push_back(r->second);
    return;
  }
  const auto it = pieces_.find(piece);
  if (it != pieces_.end()) {
    out->push_back(it->second);
    return;
  }
  if (!byte_fallback_) {
    if (unk_id_ >= 0) out->push_back(unk_id_);
    return;
  }
  for (const char c : piece) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      out->push_back(id);
    } else if (unk_id_ >= 0) {
      out->push_back(unk_id_);
    }
  }
}

void SpmModel::Bpe(std::string_view word, std::vector<int32_t>* out) const {
  // Symbols in a doubly linked list over the word's characters; an agenda of candidate pairs,
  // best first by (score, then leftmost). A popped pair is stale when either symbol has changed
  // since it was pushed, which sentencepiece detects by the sizes: symbols only grow, and a
  // symbol merged into its left neighbour is emptied.
  struct Sym {
    uint32_t start, len;
    int32_t prev, next;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    const auto len = static_cast<uint32_t>(std::min(OneCharLen(word[i]), word.size() - i));
    const auto k = static_cast<int32_t>(syms.size());
    syms.push_back({static_cast<uint32_t>(i), len, k - 1, k + 1});
    i += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  struct Pair {
    float score;
    int32_t left, right;
    uint32_t size;
  };
  struct Worse {
    bool operator()(const Pair& a, const Pair& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };
  std::priority_queue<Pair, std::vector<Pair>, Worse> agenda;
  // For unused pieces: the halves each was last proposed from, to split it back at the end.
  RevMerge rev_merge;
  auto maybe_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Sym& l = syms[left];
    const Sym& r = syms[right];
    const std::string_view piece = word.substr(l.start, l.len + r.len);
    const auto it = pieces_.find(piece);
    if (it == pieces_.end()) return;
    agenda.push({scores_[it->second], left, right, static_cast<uint32_t>(piece.size())});
    if (has_unused_ && types_[it->second] == kPieceUnused) {
      rev_merge[piece] = {word.substr(l.start, l.len), word.substr(r.start, r.len)};
    }
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) maybe_add(i - 1, i);

  while (!agenda.empty()) {
    const Pair top = agenda.top();
    agenda.pop();
    Sym& l = syms[top.left];
    Sym& r = syms[top.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != top.size) continue;
    l.len += r.len;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = top.left;
    r.len = 0;
    maybe_add(l.prev, top.left);
    maybe_add(top.left, l.next);
  }

  for (int32_t i = 0; i >= 0; i = syms[i].next) {
    const std::string_view piece = word.substr(syms[i].start, syms[i].len);
    if (has_unused_) {
      Resegment(piece, rev_merge, out);
    } else {
      EmitPiece(piece, out);
    }
  }
}

void SpmModel::Resegment(std::string_view piece, const RevMerge& rev_merge,
                         std::vector<int32_t>* out) const {
  const auto it = pieces_.find(piece);
  if (it != pieces_.end() && types_[it->second] == kPieceUnused) {
    const auto halves = rev_merge.find(piece);
    if (halves != rev_merge.end()) {
      Resegment(halves->second.first, rev_merge, out);
      Resegment(halves->second.second, rev_merge, out);
      return;
    }
  }
  EmitPiece(piece, out);
}

void SpmModel::EncodeWord(std::string_view word, std::vector<int32_t>* out, bool* prev_unk) const {
  const size_t before = out->size();
  bool cached = false;
  if (word.size() <= kCacheMaxWordBytes) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      cached = true;
    }
  }
  if (!cached) {
    Bpe(word, out);
    if (!byte_fallback_) {
      // Without byte fallback, sentencepiece turns a run of unknown symbols into one unk.
      auto last = std::unique(out->begin() + static_cast<std::ptrdiff_t>(before), out->end(),
                              [&](int32_t a, int32_t b) { return a == unk_id_ && b == unk_id_; });
      out->erase(last, out->end());
    }
    if (word.size() <= kCacheMaxWordBytes) {
      std::vector<int32_t> ids(out->begin() + static_cast<std::ptrdiff_t>(before), out->end());
      std::lock_guard<std::mutex> lock(cache_mu_);
      if (cache_.size() >= kCacheMaxEntries) cache_.clear();
      cache_.emplace(std::string(word), std::move(ids));
    }
  }
  if (!byte_fallback_ && out->size() > before) {
    // The run may continue from the previous word; a word that was all unknown keeps it going.
    if (*prev_unk && (*out)[before] == unk_id_) out->erase(out->begin() + before);
    if (out->size() > before) *prev_unk = out->back() == unk_id_;
  }
}

void SpmModel::EncodeRun(std::string_view run, std::vector<int32_t>* out, bool* prev_unk) const {
  if (!cut_words_) {
    EncodeWord(run, out, prev_unk);
    return;
  }
  size_t word_start = 0;
  for (size_t p = 1; p + kSpaceSymbol.size() <= run.size(); ++p) {
    if (run[p] != kSpaceSymbol[0] || !IsSpaceSymbolAt(run, p) || !CanCutBefore(run, p)) continue;
    EncodeWord(run.substr(word_start, p - word_start), out, prev_unk);
    word_start = p;
  }
  EncodeWord(run.substr(word_start), out, prev_unk);
}

void SpmModel::Encode(std::string_view raw, bool dummy_prefix, std::vector<int32_t>* out) const {
  if (raw.empty()) return;
  // Identity normalization: only the space changes (to "▁"); nothing is trimmed or collapsed.
  std::string normalized;
  normalized.reserve(raw.size() + raw.size() / 2 + kSpaceSymbol.size());
  if (dummy_prefix) normalized += kSpaceSymbol;
  for (const char c : raw) {
    if (c == ' ') {
      normalized += kSpaceSymbol;
    } else {
      normalized.push_back(c);
    }
  }
  std::vector<std::pair<std::string_view, int32_t>> parts;
  user_matcher_.Split(normalized, &parts);
  bool prev_unk = false;
  for (const auto& [text, id] : parts) {
    if (id >= 0) {
      out->push_back(id);
      prev_unk = false;
    } else {
      EncodeRun(text, out, &prev_unk);
    }
  }
}

}  // namespace awq::tok

namespace awq {

void Tokenizer::Impl::EncodeSpm(std::string_view text, bool parse_special,
                                std::vector<int32_t>* out) const {
  // Control tokens are cut out of the raw text first (sentencepiece itself never matches them;
  // Hugging Face and llama.cpp do with special tokens on). The dummy prefix goes before the text
  // and, as in llama.cpp, before text that follows a control token.
  std::vector<std::pair<std::string_view, int32_t>> parts;
  matchers[0][parse_special].Split(text, &parts);
  bool after_control = true;
  for (const auto& [piece, id] : parts) {
    if (id >= 0) {
      out->push_back(id);
      after_control = true;
    } else {
      spm->Encode(piece, spec.add_dummy_prefix && after_control, out);
      after_control = false;
    }
  }
}

}  // namespace awq
