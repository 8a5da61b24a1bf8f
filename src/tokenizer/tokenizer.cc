// Byte-level BPE encode/decode: added-token splitting, regex pre-tokenization, merges by rank
// with a per-word cache, lossy UTF-8 decoding and the streaming decoder; the tables of both
// models (the SentencePiece encoder itself is in tokenizer_spm.cc).
#include <algorithm>
#include <queue>

#include "awq/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/tokenizer_spm.h"
#include "tokenizer/utf8.h"

namespace awq {
namespace tok {
namespace {

// Unicode White_Space (Rust's char::is_whitespace, which Hugging Face's lstrip/rstrip use):
// returns the byte length of the whitespace character at s[i..n), or 0.
size_t WhitespaceAt(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  const uint8_t b = p[i];
  if (b == ' ' || (b >= 0x09 && b <= 0x0D)) return 1;
  if (b == 0xC2 && i + 1 < n && (p[i + 1] == 0x85 || p[i + 1] == 0xA0)) return 2;
  if (b == 0xE1 && i + 2 < n && p[i + 1] == 0x9A && p[i + 2] == 0x80) return 3;  // U+1680
  if (b == 0xE2 && i + 2 < n) {
    const uint8_t c = p[i + 1], d = p[i + 2];
    if (c == 0x80 && ((d >= 0x80 && d <= 0x8A) || d == 0xA8 || d == 0xA9 || d == 0xAF)) return 3;
    if (c == 0x81 && d == 0x9F) return 3;  // U+205F
  }
  if (b == 0xE3 && i + 2 < n && p[i + 1] == 0x80 && p[i + 2] == 0x80) return 3;  // U+3000
  return 0;
}

// Start of the UTF-8 character that ends just before s[i].
size_t PrevCharStart(std::string_view s, size_t i) {
  size_t j = i - 1;
  while (j > 0 && (static_cast<uint8_t>(s[j]) & 0xC0) == 0x80) --j;
  return j;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens, bool normalized,
                                     bool with_special)
    : tokens_(&tokens) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    const AddedToken& t = tokens[i];
    if (t.content.empty() || t.normalized != normalized) continue;
    if (t.special && !with_special) continue;
    by_first_byte_[static_cast<uint8_t>(t.content[0])].push_back(static_cast<int32_t>(i));
    ++count_;
  }
  for (auto& bucket : by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(), [&](int32_t a, int32_t b) {
      return tokens[a].content.size() > tokens[b].content.size();
    });
  }
}

void AddedTokenMatcher::Split(std::string_view text,
                              std::vector<std::pair<std::string_view, int32_t>>* out) const {
  if (count_ == 0) {
    if (!text.empty()) out->emplace_back(text, -1);
    return;
  }
  size_t piece_start = 0;  // start of the plain text not yet emitted
  size_t i = 0;
  while (i < text.size()) {
    const auto& bucket = by_first_byte_[static_cast<uint8_t>(text[i])];
    const AddedToken* hit = nullptr;
    for (int32_t idx : bucket) {
      const AddedToken& t = (*tokens_)[idx];
      if (text.compare(i, t.content.size(), t.content) == 0) {
        hit = &t;
        break;
      }
    }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    size_t start = i, end = i + hit->content.size();
    if (hit->lstrip) {
      while (start > piece_start) {
        const size_t prev = PrevCharStart(text, start);
        if (WhitespaceAt(text, prev) != start - prev) break;
        start = prev;
      }
    }
    if (hit->rstrip) {
      while (end < text.size()) {
        const size_t w = WhitespaceAt(text, end);
        if (w == 0) break;
        end += w;
      }
    }
    if (start > piece_start) out->emplace_back(text.substr(piece_start, start - piece_start), -1);
    out->emplace_back(text.substr(start, end - start), hit->id);
    piece_start = i = end;
  }
  if (piece_start < text.size()) out->emplace_back(text.substr(piece_start), -1);
}

}  // namespace tok

Tokenizer::Impl::Impl(tok::TokenizerSpec s) : spec(std::move(s)) {
  const std::string& src = spec.source;
  const size_t n = spec.vocab.size();
  if (spec.in_vocab.size() != n) spec.in_vocab.assign(n, 1);
  vocab_to_id.reserve(n * 2);
  for (size_t id = 0; id < n; ++id) {
    if (!spec.in_vocab[id]) continue;
    const auto [it, inserted] = vocab_to_id.emplace(spec.vocab[id], static_cast<int32_t>(id));
    if (!inserted) {
      throw Error(src + ": vocabulary entry \"" + spec.vocab[id] + "\" appears twice (ids " +
                  std::to_string(it->second) + " and " + std::to_string(id) + ")");
    }
  }
  special.assign(n, 0);
  // Hugging Face looks an id up in the added vocabulary first, then in the model's.
  token_text = spec.vocab;
  for (const tok::AddedToken& t : spec.added) {
    if (t.id < 0 || static_cast<size_t>(t.id) >= n) {
      throw Error(src + ": added token \"" + t.content + "\" has id " + std::to_string(t.id) +
                  " outside the vocabulary of " + std::to_string(n));
    }
    if (t.content.empty()) throw Error(src + ": added token " + std::to_string(t.id) + " is empty");
    if (t.special) special[t.id] = 1;
    added_to_id[t.content] = t.id;
    token_text[t.id] = t.content;
  }
  const tok::ByteLevelMap& bl = tok::ByteLevelMap::Get();
  token_bytes.resize(n);
  if (spec.kind == tok::ModelKind::kSentencePieceBpe) {
    for (const auto& [what, size] : {std::pair<const char*, size_t>{"scores", spec.scores.size()},
                                     {"piece types", spec.piece_types.size()}}) {
      if (size != n) {
        throw Error(src + ": " + std::to_string(size) + " " + what + " for " + std::to_string(n) +
                    " tokens");
      }
    }
    for (size_t id = 0; id < n; ++id) {
      token_bytes[id] = tok::SpmPieceBytes(token_text[id], spec.piece_types[id]);
    }
    spm = std::make_unique<const tok::SpmModel>(spec);
  } else {
    for (size_t id = 0; id < n; ++id) {
      // The ByteLevel decoder maps each character back to its byte; a token with a character
      // outside the map (an added token such as "<|im_start|> x") keeps its UTF-8 as is.
      if (!bl.DecodeTo(token_text[id], &token_bytes[id])) token_bytes[id] = token_text[id];
    }
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab_to_id.find(bl.Encode(static_cast<uint8_t>(b)));
    byte_ids[b] = it != vocab_to_id.end() ? it->second : -1;
  }

  merges.reserve(spec.merges.size() * 2);
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    // Not a structured binding: clang before 16 cannot capture one in a lambda.
    const std::string& a = spec.merges[rank].first;
    const std::string& b = spec.merges[rank].second;
    auto find = [&](const std::string& piece) {
      const auto it = vocab_to_id.find(piece);
      if (it == vocab_to_id.end()) {
        throw Error(src + ": merge " + std::to_string(rank) + " (\"" + a + " " + b + "\") uses \"" +
                    piece + "\", which is not in the vocabulary");
      }
      return it->second;
    };
    const int32_t ia = find(a), ib = find(b), merged = find(a + b);
    // A repeated pair keeps its first (best) rank, as Hugging Face's BPE builder does.
    merges.emplace(PairKey(ia, ib), Merge{static_cast<int32_t>(rank), merged});
  }

  for (const std::string& pattern : spec.patterns) pre.AddPattern(pattern, src);
  for (int norm = 0; norm < 2; ++norm) {
    for (int with_special = 0; with_special < 2; ++with_special) {
      matchers[norm][with_special] = tok::AddedTokenMatcher(spec.added, norm, with_special);
    }
  }

  auto check_id = [&](int32_t id, const char* what) {
    if (id >= static_cast<int32_t>(n)) {
      throw Error(src + ": " + what + " id " + std::to_string(id) +
                  " is outside the vocabulary of " + std::to_string(n));
    }
  };
  check_id(spec.bos_id, "bos");
  check_id(spec.eos_id, "eos");
  check_id(spec.unk_id, "unk");
  check_id(spec.pad_id, "pad");
  for (int32_t id : spec.prefix_ids) check_id(id, "post-processor");
  for (int32_t id : spec.suffix_ids) check_id(id, "post-processor");
  for (int32_t id : spec.extra_eos_ids) check_id(id, "end-of-turn");

  // Tokens that end a turn or a document in the families awq.cpp knows.
  static const char* const kEndTokens[] = {
      "<|im_end|>",      "<|eot_id|>", "<|eom_id|>",    "<|endoftext|>",
      "<|end_of_text|>", "<|end|>",    "<end_of_turn>", "</s>"};
  if (spec.eos_id >= 0) eos_ids.push_back(spec.eos_id);
  for (int32_t id : spec.extra_eos_ids) {
    if (id >= 0) eos_ids.push_back(id);
  }
  for (const tok::AddedToken& t : spec.added) {
    for (const char* name : kEndTokens) {
      if (t.special && t.content == name) eos_ids.push_back(t.id);
    }
  }
  std::sort(eos_ids.begin(), eos_ids.end());
  eos_ids.erase(std::unique(eos_ids.begin(), eos_ids.end()), eos_ids.end());
}

Tokenizer::Impl::~Impl() = default;

void Tokenizer::Impl::Bpe(std::string_view word, std::vector<int32_t>* out) const {
  if (spec.ignore_merges) {
    std::string spelled;
    tok::ByteLevelMap::Get().EncodeTo(word, &spelled);
    const auto it = vocab_to_id.find(spelled);
    if (it != vocab_to_id.end()) {
      out->push_back(it->second);
      return;
    }
  }
  // Symbols in a doubly linked list; a min-heap of candidate merges ordered by (rank, position)
  // so equal ranks merge leftmost first, as Hugging Face's BPE does. Stale heap entries (one of
  // the two symbols changed since the push) are skipped when popped.
  struct Sym {
    int32_t id;
    int32_t prev, next;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  for (unsigned char c : word) {
    int32_t id = byte_ids[c];
    if (id < 0) id = spec.unk_id;  // no unk either: the byte is dropped, as in Hugging Face
    if (id < 0) continue;
    const auto k = static_cast<int32_t>(syms.size());
    syms.push_back({id, k - 1, k + 1});
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  struct Cand {
    int32_t rank, pos, left_id, right_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0) return;
    const int32_t nx = syms[pos].next;
    if (nx < 0) return;
    const auto it = merges.find(PairKey(syms[pos].id, syms[nx].id));
    if (it != merges.end()) heap.push({it->second.rank, pos, syms[pos].id, syms[nx].id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& left = syms[c.pos];
    if (left.id != c.left_id || left.next < 0) continue;  // left merged away or changed
    Sym& right = syms[left.next];
    if (right.id != c.right_id) continue;
    left.id = merges.at(PairKey(c.left_id, c.right_id)).id;
    right.id = -1;  // dead
    left.next = right.next;
    if (left.next >= 0) syms[left.next].prev = c.pos;
    push(left.prev);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out->push_back(syms[i].id);
}

void Tokenizer::Impl::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (word.size() > kCacheMaxWordBytes) {
    Bpe(word, out);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    const auto it = cache.find(word);
    if (it != cache.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t before = out->size();
  Bpe(word, out);
  std::vector<int32_t> ids(out->begin() + static_cast<std::ptrdiff_t>(before), out->end());
  std::lock_guard<std::mutex> lock(cache_mu);
  if (cache.size() >= kCacheMaxEntries) cache.clear();
  cache.emplace(std::string(word), std::move(ids));
}

void Tokenizer::Impl::EncodeText(std::string_view text, bool parse_special,
                                 std::vector<int32_t>* out) const {
  if (spm != nullptr) {
    EncodeSpm(text, parse_special, out);
    return;
  }
  // Added tokens first: Hugging Face matches the non-normalized ones on the raw text, then the
  // normalized ones on what is left; only the rest is pre-tokenized.
  std::vector<std::pair<std::string_view, int32_t>> pass1, pass2;
  matchers[0][parse_special].Split(text, &pass1);
  const tok::AddedTokenMatcher& second = matchers[1][parse_special];
  for (const auto& piece : pass1) {
    if (piece.second >= 0 || second.empty()) {
      pass2.push_back(piece);
    } else {
      second.Split(piece.first, &pass2);
    }
  }
  tok::PreTokenizer::Session session(pre);
  const tok::PreTokenizer::WordFn on_word = [&](std::string_view w) { EncodeWord(w, out); };
  for (const auto& [piece, id] : pass2) {
    if (id >= 0) {
      out->push_back(id);
    } else {
      session.Split(piece, on_word);
    }
  }
}

Tokenizer MakeTokenizer(std::shared_ptr<const Tokenizer::Impl> impl) {
  return Tokenizer(std::move(impl));
}

Tokenizer BuildTokenizer(tok::TokenizerSpec spec) {
  return MakeTokenizer(std::make_shared<const Tokenizer::Impl>(std::move(spec)));
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::vector<int32_t> ids;
  if (add_special) ids = impl_->spec.prefix_ids;
  ids.reserve(ids.size() + text.size() / 3 + 4);  // English averages ~4 bytes per token
  if (tok::IsValidUtf8(text)) {
    impl_->EncodeText(text, parse_special, &ids);
  } else {
    std::string repaired;
    tok::AppendUtf8Lossy(text, /*final=*/true, &repaired);
    impl_->EncodeText(repaired, parse_special, &ids);
  }
  if (add_special)
    ids.insert(ids.end(), impl_->spec.suffix_ids.begin(), impl_->spec.suffix_ids.end());
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  // sentencepiece drops the space its dummy prefix put before the text: the leading "▁" of the
  // first token that is not a special one.
  bool drop_prefix_space = impl_->spm != nullptr && impl_->spec.add_dummy_prefix;
  for (int32_t id : ids) {
    const std::string& b = TokenBytes(id);
    if (impl_->special[id]) {
      if (!skip_special) bytes += b;
      continue;
    }
    if (drop_prefix_space) {
      drop_prefix_space = false;
      if (impl_->token_text[id].compare(0, tok::kSpaceSymbol.size(), tok::kSpaceSymbol) == 0) {
        bytes.append(b, 1);
        continue;
      }
    }
    bytes += b;
  }
  if (tok::IsValidUtf8(bytes)) return bytes;
  std::string text;
  tok::AppendUtf8Lossy(bytes, /*final=*/true, &text);
  return text;
}

std::string Tokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return impl_->token_text[id];
}

const std::string& Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw Error(impl_->spec.source + ": token id " + std::to_string(id) +
                " is outside the vocabulary of " + std::to_string(vocab_size()));
  }
  return impl_->token_bytes[id];
}

int32_t Tokenizer::TokenId(std::string_view piece) const {
  const std::string key(piece);
  const auto added = impl_->added_to_id.find(key);
  if (added != impl_->added_to_id.end()) return added->second;
  const auto it = impl_->vocab_to_id.find(key);
  return it == impl_->vocab_to_id.end() ? -1 : it->second;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->special[id] != 0;
}

int32_t Tokenizer::bos_id() const { return impl_->spec.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->spec.eos_id; }
int32_t Tokenizer::unk_id() const { return impl_->spec.unk_id; }
int32_t Tokenizer::pad_id() const { return impl_->spec.pad_id; }
std::vector<int32_t> Tokenizer::eos_ids() const { return impl_->eos_ids; }
int Tokenizer::vocab_size() const { return static_cast<int>(impl_->spec.vocab.size()); }
bool Tokenizer::add_bos() const {
  return !impl_->spec.prefix_ids.empty() && impl_->spec.prefix_ids.front() == impl_->spec.bos_id;
}
bool Tokenizer::add_eos() const {
  return !impl_->spec.suffix_ids.empty() && impl_->spec.suffix_ids.back() == impl_->spec.eos_id;
}
const std::string& Tokenizer::chat_template() const { return impl_->spec.chat_template; }
const std::string& Tokenizer::source() const { return impl_->spec.source; }

std::string Tokenizer::ApplyChatTemplate(const std::vector<ChatMessage>& messages,
                                         bool add_generation_prompt) const {
  if (chat_template().empty()) {
    throw Error(source() + ": the tokenizer has no chat template (tokenizer.chat_template)");
  }
  const std::string bos = bos_id() >= 0 ? TokenText(bos_id()) : "";
  const std::string eos = eos_id() >= 0 ? TokenText(eos_id()) : "";
  return RenderChatTemplate(chat_template(), bos, eos, messages, add_generation_prompt);
}

std::string StreamingDecoder::Feed(int32_t id) {
  const std::string& bytes = tokenizer_->TokenBytes(id);
  if (skip_special_ && tokenizer_->IsSpecial(id)) return "";
  pending_ += bytes;
  std::string out;
  const size_t used = tok::AppendUtf8Lossy(pending_, /*final=*/false, &out);
  pending_.erase(0, used);
  return out;
}

std::string StreamingDecoder::Flush() {
  std::string out;
  tok::AppendUtf8Lossy(pending_, /*final=*/true, &out);
  pending_.clear();
  return out;
}

}  // namespace awq
