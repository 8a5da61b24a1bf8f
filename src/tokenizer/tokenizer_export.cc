// Writes a tokenizer as Hugging Face files (tokenizer.json, tokenizer_config.json,
// special_tokens_map.json) so that transformers loads the tokenizer awq.cpp uses.
#include <algorithm>
#include <filesystem>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include "awq/error.h"
#include "core/mapped_file.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/tokenizer_spm.h"

namespace awq {
namespace {

using Json = nlohmann::ordered_json;

Json AddedTokenJson(const tok::AddedToken& t) {
  return Json{{"id", t.id},          {"content", t.content}, {"single_word", false},
              {"lstrip", t.lstrip},  {"rstrip", t.rstrip},   {"normalized", t.normalized},
              {"special", t.special}};
}

// The AddedToken form transformers writes for bos_token & co.
Json TokenRefJson(const tok::TokenizerSpec& spec, int32_t id) {
  if (id < 0) return Json();
  for (const tok::AddedToken& t : spec.added) {
    if (t.id == id) {
      return Json{{"content", t.content},
                  {"lstrip", t.lstrip},
                  {"normalized", t.normalized},
                  {"rstrip", t.rstrip},
                  {"single_word", false}};
    }
  }
  return Json{{"content", spec.vocab[id]},
              {"lstrip", false},
              {"normalized", true},
              {"rstrip", false},
              {"single_word", false}};
}

std::string TokenContent(const tok::TokenizerSpec& spec, int32_t id) {
  for (const tok::AddedToken& t : spec.added) {
    if (t.id == id) return t.content;
  }
  return spec.vocab[id];
}

// TemplateProcessing with the prefix and suffix ids around $A (and around $B for pairs).
Json PostProcessorJson(const tok::TokenizerSpec& spec) {
  Json single = Json::array(), pair = Json::array(), specials = Json::object();
  auto special_item = [&](int32_t id, int type_id) {
    const std::string content = TokenContent(spec, id);
    specials[content] =
        Json{{"id", content}, {"ids", Json::array({id})}, {"tokens", Json::array({content})}};
    return Json{{"SpecialToken", Json{{"id", content}, {"type_id", type_id}}}};
  };
  auto sequence_item = [](const char* name, int type_id) {
    return Json{{"Sequence", Json{{"id", name}, {"type_id", type_id}}}};
  };
  for (int32_t id : spec.prefix_ids) single.push_back(special_item(id, 0));
  single.push_back(sequence_item("A", 0));
  for (int32_t id : spec.suffix_ids) single.push_back(special_item(id, 0));
  pair = single;
  for (int32_t id : spec.prefix_ids) pair.push_back(special_item(id, 1));
  pair.push_back(sequence_item("B", 1));
  for (int32_t id : spec.suffix_ids) pair.push_back(special_item(id, 1));
  return Json{{"type", "TemplateProcessing"},
              {"single", single},
              {"pair", pair},
              {"special_tokens", specials}};
}

// The vocabulary as a JSON object {piece: id} in id order.
Json VocabJson(const tok::TokenizerSpec& spec) {
  // Appended straight to ordered_json's underlying vector: its operator[] searches the keys
  // linearly, quadratic for 50k entries. The loader already rejected duplicate spellings.
  Json vocab = Json::object();
  auto& entries = static_cast<std::vector<std::pair<const std::string, Json>>&>(
      vocab.get_ref<Json::object_t&>());
  entries.reserve(spec.vocab.size());
  for (size_t id = 0; id < spec.vocab.size(); ++id) {
    if (spec.in_vocab[id]) entries.emplace_back(spec.vocab[id], Json(id));
  }
  return vocab;
}

size_t Utf8Chars(std::string_view s) {
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// Merges equivalent to the piece scores, as transformers' SentencePieceExtractor derives them
// (generate_merges): every split of a normal piece into two pieces that merges may produce, best
// score first, then longer left half, longer right half (in characters), then piece id and the
// halves' ids. A pair's rank then orders merges as the score of the piece they make does.
Json SpmMergesJson(const tok::TokenizerSpec& spec) {
  auto mergeable = [&](int32_t id) {
    const uint8_t t = spec.piece_types[id];
    return t == tok::kPieceNormal || t == tok::kPieceUserDefined || t == tok::kPieceUnused;
  };
  std::unordered_map<std::string_view, int32_t> ids;
  ids.reserve(spec.vocab.size() * 2);
  for (size_t id = 0; id < spec.vocab.size(); ++id) {
    if (mergeable(static_cast<int32_t>(id))) ids.emplace(spec.vocab[id], static_cast<int32_t>(id));
  }
  struct Merge {
    float score;
    uint32_t left_chars, right_chars;
    int32_t piece, left, right;
  };
  std::vector<Merge> merges;
  for (size_t id = 0; id < spec.vocab.size(); ++id) {
    if (spec.piece_types[id] != tok::kPieceNormal) continue;
    const std::string_view piece = spec.vocab[id];
    for (size_t cut = 1; cut < piece.size(); ++cut) {
      if ((piece[cut] & 0xC0) == 0x80) continue;  // inside a character
      const auto l = ids.find(piece.substr(0, cut));
      const auto r = ids.find(piece.substr(cut));
      if (l == ids.end() || r == ids.end()) continue;
      merges.push_back({spec.scores[id], static_cast<uint32_t>(Utf8Chars(l->first)),
                        static_cast<uint32_t>(Utf8Chars(r->first)), static_cast<int32_t>(id),
                        l->second, r->second});
    }
  }
  std::sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    return std::tie(b.score, b.left_chars, b.right_chars, a.piece, a.left, a.right) <
           std::tie(a.score, a.left_chars, a.right_chars, b.piece, b.left, b.right);
  });
  Json out = Json::array();
  auto& items = out.get_ref<Json::array_t&>();
  items.reserve(merges.size());
  for (const Merge& m : merges) {
    items.push_back(Json::array({spec.vocab[m.left], spec.vocab[m.right]}));
  }
  return out;
}

// A SentencePiece BPE model in the form transformers' converter gives Gemma and Llama-2: spaces
// replaced by "▁" (after a "▁" in front when the model adds a dummy prefix), no pre-tokenizer,
// BPE with byte fallback; user-defined pieces are added tokens matched in the normalized text.
// UNUSED pieces have no Hugging Face equivalent: no merge makes them, as sentencepiece's output
// never holds one (it splits them back).
Json SpmTokenizerJson(const tok::TokenizerSpec& spec) {
  Json added = Json::array();
  for (const tok::AddedToken& t : spec.added) added.push_back(AddedTokenJson(t));
  const std::string space(tok::kSpaceSymbol);
  Json replace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}};
  Json normalizer = replace;
  Json decoders =
      Json::array({Json{{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
                   Json{{"type", "ByteFallback"}}, Json{{"type", "Fuse"}}});
  if (spec.add_dummy_prefix) {
    normalizer =
        Json{{"type", "Sequence"},
             {"normalizers",
              Json::array({Json{{"type", "Prepend"}, {"prepend", space}}, std::move(replace)})}};
    decoders.push_back(Json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  }
  const bool has_unk = spec.unk_id >= 0 && spec.in_vocab[spec.unk_id];
  Json model = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", has_unk ? Json(spec.vocab[spec.unk_id]) : Json()},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", true},
                {"byte_fallback", true},
                {"ignore_merges", false},
                {"vocab", VocabJson(spec)},
                {"merges", SpmMergesJson(spec)}};
  return Json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", std::move(added)},
              {"normalizer", std::move(normalizer)},
              {"pre_tokenizer", nullptr},
              {"post_processor", PostProcessorJson(spec)},
              {"decoder", Json{{"type", "Sequence"}, {"decoders", std::move(decoders)}}},
              {"model", std::move(model)}};
}

Json TokenizerJson(const tok::TokenizerSpec& spec) {
  if (spec.kind == tok::ModelKind::kSentencePieceBpe) return SpmTokenizerJson(spec);
  Json added = Json::array();
  for (const tok::AddedToken& t : spec.added) added.push_back(AddedTokenJson(t));
  Json vocab = VocabJson(spec);
  Json merges = Json::array();
  for (const auto& [a, b] : spec.merges) merges.push_back(Json::array({a, b}));
  Json model = {
      {"type", "BPE"},
      {"dropout", nullptr},
      {"unk_token",
       spec.unk_id >= 0 && spec.in_vocab[spec.unk_id] ? Json(spec.vocab[spec.unk_id]) : Json()},
      {"continuing_subword_prefix", nullptr},
      {"end_of_word_suffix", nullptr},
      {"fuse_unk", false},
      {"byte_fallback", false},
      {"ignore_merges", spec.ignore_merges},
      {"vocab", std::move(vocab)},
      {"merges", std::move(merges)}};
  return Json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", std::move(added)},
              {"normalizer", spec.normalizer_json},
              {"pre_tokenizer", spec.pre_tokenizer_json},
              {"post_processor", PostProcessorJson(spec)},
              {"decoder", Json{{"type", "ByteLevel"},
                               {"add_prefix_space", true},
                               {"trim_offsets", true},
                               {"use_regex", true}}},
              {"model", std::move(model)}};
}

Json ConfigJson(const Tokenizer& tokenizer, const tok::TokenizerSpec& spec) {
  Json decoder = Json::object();
  for (const tok::AddedToken& t : spec.added) {
    Json entry = AddedTokenJson(t);
    entry.erase("id");
    decoder[std::to_string(t.id)] = std::move(entry);
  }
  auto content_or_null = [&](int32_t id) {
    return id >= 0 ? Json(TokenContent(spec, id)) : Json();
  };
  Json config = Json::object();
  // transformers rebuilds the post-processor from these two flags when they are present, which
  // only expresses "BOS first" and "EOS last"; other templates stay in tokenizer.json alone.
  const bool simple =
      (spec.prefix_ids.empty() || spec.prefix_ids == std::vector<int32_t>{spec.bos_id}) &&
      (spec.suffix_ids.empty() || spec.suffix_ids == std::vector<int32_t>{spec.eos_id});
  if (simple) {
    config["add_bos_token"] = !spec.prefix_ids.empty();
    config["add_eos_token"] = !spec.suffix_ids.empty();
  }
  config.update(Json{{"added_tokens_decoder", std::move(decoder)},
                     {"bos_token", content_or_null(spec.bos_id)},
                     {"eos_token", content_or_null(spec.eos_id)},
                     {"unk_token", content_or_null(spec.unk_id)},
                     {"pad_token", content_or_null(spec.pad_id)},
                     {"clean_up_tokenization_spaces", false}});
  if (!spec.chat_template.empty()) config["chat_template"] = spec.chat_template;
  // transformers' own spelling of "no limit".
  config["model_max_length"] = spec.model_max_length > 0 ? Json(spec.model_max_length)
                                                         : Json(1000000000000000019884624838656.0);
  // The generic fast tokenizer: it takes tokenizer.json as it is, where model-specific classes
  // (GPT2Tokenizer, Qwen2Tokenizer) may rebuild parts of the pipeline from their own defaults.
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  return config;
}

Json SpecialTokensMapJson(const tok::TokenizerSpec& spec) {
  Json map = Json::object();
  const std::pair<const char*, int32_t> entries[] = {{"bos_token", spec.bos_id},
                                                     {"eos_token", spec.eos_id},
                                                     {"unk_token", spec.unk_id},
                                                     {"pad_token", spec.pad_id}};
  for (const auto& [key, id] : entries) {
    if (id >= 0) map[key] = TokenRefJson(spec, id);
  }
  return map;
}

void WriteJson(const std::string& path, const Json& j) {
  // ensure_ascii off: vocabularies are mostly non-ASCII byte-level spellings ("Ġ"), and
  // transformers reads UTF-8. Invalid UTF-8 cannot occur: every string came from UTF-8 input.
  const std::string text = j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
  WriteFileAtomic(path, text.data(), text.size());
}

}  // namespace

void WriteHfTokenizerFiles(const Tokenizer& tokenizer, const std::string& dir) {
  if (!std::filesystem::is_directory(dir)) {
    throw Error(dir + ": tokenizer export folder does not exist");
  }
  const tok::TokenizerSpec& spec = tokenizer.impl().spec;
  const std::filesystem::path base(dir);
  WriteJson((base / "tokenizer.json").string(), TokenizerJson(spec));
  WriteJson((base / "tokenizer_config.json").string(), ConfigJson(tokenizer, spec));
  WriteJson((base / "special_tokens_map.json").string(), SpecialTokensMapJson(spec));
}

}  // namespace awq
