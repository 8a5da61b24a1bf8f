// Loads a tokenizer from Hugging Face's tokenizer.json and tokenizer_config.json: byte-level BPE,
// or SentencePiece BPE written as BPE with byte fallback (Gemma's, Llama-2's, awq.cpp's export).
#include <filesystem>
#include <string>
#include <unordered_map>

#include "awq/error.h"
#include "awq/gguf.h"
#include "core/mapped_file.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/tokenizer_spm.h"

namespace awq {
namespace {

// std::map-backed: ordered_json's linear key search makes a 50k-entry vocabulary quadratic.
using Json = nlohmann::json;

// Ids past this are taken for corrupt input rather than allocated (real vocabularies stay below
// a few hundred thousand).
constexpr int64_t kMaxVocab = 1 << 20;

std::string Show(const Json& j) {
  std::string s = j.dump();
  return s.size() > 200 ? s.substr(0, 200) + "..." : s;
}

bool GetBool(const Json& obj, const char* key, bool fallback, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(where + "." + key + " should be a boolean, got " + Show(*it));
  return it->get<bool>();
}

std::string GetString(const Json& obj, const char* key, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) {
    throw Error(where + "." + key + " should be a string, got " +
                (it == obj.end() ? std::string("nothing") : Show(*it)));
  }
  return it->get<std::string>();
}

bool IsId(const Json& j) {
  return j.is_number_integer() && j.get<int64_t>() >= 0 && j.get<int64_t>() < kMaxVocab;
}

int32_t GetId(const Json& j, const std::string& where) {
  if (!IsId(j)) {
    throw Error(where + " should be a token id in [0, " + std::to_string(kMaxVocab) + "), got " +
                Show(j));
  }
  return static_cast<int32_t>(j.get<int64_t>());
}

// Escapes a literal for a PCRE2 pattern (Split with {"String": ...}).
std::string QuoteRegex(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}-/#&~ ").find(c) != std::string_view::npos) {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

// Walks the pre_tokenizer tree, appending its split patterns in order. Returns whether a
// ByteLevel step was seen (byte-level BPE needs one).
bool ParsePreTokenizer(const Json& j, const std::string& where, tok::TokenizerSpec* spec) {
  if (j.is_null()) return false;
  if (!j.is_object()) throw Error(where + " should be an object, got " + Show(j));
  const std::string type = GetString(j, "type", where);
  if (type == "Sequence") {
    const auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) {
      throw Error(where + ".pretokenizers should be an array, got " + Show(j));
    }
    bool byte_level = false;
    for (size_t i = 0; i < it->size(); ++i) {
      byte_level |=
          ParsePreTokenizer((*it)[i], where + ".pretokenizers[" + std::to_string(i) + "]", spec);
    }
    return byte_level;
  }
  if (type == "ByteLevel") {
    if (GetBool(j, "add_prefix_space", false, where)) {
      throw Error(where + ".add_prefix_space is true; only add_prefix_space=false is supported");
    }
    if (GetBool(j, "use_regex", true, where)) spec->patterns.push_back(tok::kGpt2Pattern);
    return true;
  }
  if (type == "Digits") {
    spec->patterns.push_back(GetBool(j, "individual_digits", false, where) ? tok::kDigitPattern
                                                                           : tok::kDigitsPattern);
    return false;
  }
  if (type == "Split") {
    const auto pat = j.find("pattern");
    if (pat == j.end() || !pat->is_object()) {
      throw Error(where + ".pattern should be {\"Regex\": ...} or {\"String\": ...}, got " +
                  Show(j));
    }
    const std::string behavior = GetString(j, "behavior", where);
    if (behavior != "Isolated") {
      throw Error(where + ".behavior is \"" + behavior + "\"; only \"Isolated\" is supported");
    }
    if (GetBool(j, "invert", false, where)) {
      throw Error(where + ".invert is true; only invert=false is supported");
    }
    if (pat->contains("Regex")) {
      spec->patterns.push_back(GetString(*pat, "Regex", where + ".pattern"));
    } else {
      spec->patterns.push_back(QuoteRegex(GetString(*pat, "String", where + ".pattern")));
    }
    return false;
  }
  throw Error(where + ".type is \"" + type +
              "\"; supported pre-tokenizers: Sequence, Split (Isolated), Digits, ByteLevel");
}

// Reads the ids the post-processor puts around a single sequence.
void ParsePostProcessor(const Json& j, const std::string& where, tok::TokenizerSpec* spec) {
  if (j.is_null()) return;
  if (!j.is_object()) throw Error(where + " should be an object, got " + Show(j));
  const std::string type = GetString(j, "type", where);
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    const auto it = j.find("processors");
    if (it == j.end() || !it->is_array()) {
      throw Error(where + ".processors should be an array, got " + Show(j));
    }
    for (size_t i = 0; i < it->size(); ++i) {
      ParsePostProcessor((*it)[i], where + ".processors[" + std::to_string(i) + "]", spec);
    }
    return;
  }
  if (type != "TemplateProcessing") {
    throw Error(where + ".type is \"" + type +
                "\"; supported post-processors: TemplateProcessing, ByteLevel, Sequence");
  }
  const auto single = j.find("single");
  const auto specials = j.find("special_tokens");
  if (single == j.end() || !single->is_array()) {
    throw Error(where + ".single should be an array, got " + Show(j));
  }
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const Json& item = (*single)[i];
    const std::string w = where + ".single[" + std::to_string(i) + "]";
    if (item.is_object() && item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken") || !item["SpecialToken"].is_object()) {
      throw Error(w + " should be {\"Sequence\": ...} or {\"SpecialToken\": ...}, got " +
                  Show(item));
    }
    const std::string name = GetString(item["SpecialToken"], "id", w + ".SpecialToken");
    if (specials == j.end() || !specials->is_object() || !specials->contains(name)) {
      throw Error(where + ".special_tokens has no entry \"" + name + "\" used by " + w);
    }
    const Json& entry = (*specials)[name];
    const auto ids = entry.find("ids");
    if (!entry.is_object() || ids == entry.end() || !ids->is_array()) {
      throw Error(where + ".special_tokens[\"" + name + "\"].ids should be an array, got " +
                  Show(entry));
    }
    for (const Json& id : *ids) {
      (seen_sequence ? spec->suffix_ids : spec->prefix_ids)
          .push_back(GetId(id, where + ".special_tokens[\"" + name + "\"].ids"));
    }
  }
}

// bos_token and friends: a string, an AddedToken object {"content": ...}, or null.
std::string TokenField(const Json& config, const char* key, const std::string& where) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) return GetString(*it, "content", where + "." + key);
  throw Error(where + "." + key + " should be a string or {\"content\": ...}, got " + Show(*it));
}

Json ParseJson(const std::string& text, const std::string& source) {
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": not valid JSON: " + e.what());
  }
}

// SentencePiece BPE as transformers converts it (byte_fallback true): reads how spaces become
// "▁". Either the normalizer Replace(" ", "▁"), after Prepend("▁") for a dummy prefix, with no
// pre-tokenizer or Gemma's Split(" ", MergedWithPrevious) (a no-op once no space is left); or no
// normalizer and a Metaspace pre-tokenizer that does not split. The decoder is not read: pieces
// decode as sentencepiece decodes them.
void ReadSpmPipeline(const Json& root, const std::string& src, tok::TokenizerSpec* spec) {
  const std::string space(tok::kSpaceSymbol);
  const Json norm = root.contains("normalizer") ? root["normalizer"] : Json();
  const Json pre = root.contains("pre_tokenizer") ? root["pre_tokenizer"] : Json();
  auto type_of = [](const Json& j) {
    return j.is_object() && j.contains("type") && j["type"].is_string()
               ? j["type"].get<std::string>()
               : std::string();
  };
  auto is_replace = [&](const Json& j) {
    return type_of(j) == "Replace" && j.contains("pattern") && j["pattern"].is_object() &&
           j["pattern"].value("String", "") == " " && j.value("content", "") == space;
  };
  auto is_prepend = [&](const Json& j) {
    return type_of(j) == "Prepend" && j.value("prepend", "") == space;
  };
  const char* kExpected =
      " is not supported for a byte_fallback (SentencePiece) model; expected the normalizer "
      "Replace(\" \", \"\u2581\"), optionally after Prepend(\"\u2581\"), or a Metaspace "
      "pre-tokenizer with split=false";
  if (!norm.is_null()) {
    if (is_replace(norm)) {
      spec->add_dummy_prefix = false;
    } else if (type_of(norm) == "Sequence" && norm.contains("normalizers") &&
               norm["normalizers"].is_array() && norm["normalizers"].size() == 2 &&
               is_prepend(norm["normalizers"][0]) && is_replace(norm["normalizers"][1])) {
      spec->add_dummy_prefix = true;
    } else {
      throw Error(src + ": normalizer " + Show(norm) + kExpected);
    }
    const bool split_on_space =
        type_of(pre) == "Split" && pre.contains("pattern") && pre["pattern"].is_object() &&
        pre["pattern"].value("String", "") == " " &&
        pre.value("behavior", "") == "MergedWithPrevious" && !pre.value("invert", false);
    if (!pre.is_null() && !split_on_space) {
      throw Error(src + ": pre_tokenizer " + Show(pre) + kExpected);
    }
  } else {
    if (type_of(pre) != "Metaspace" || pre.value("replacement", "") != space ||
        pre.value("split", true)) {
      throw Error(src + ": pre_tokenizer " + Show(pre) + kExpected);
    }
    // "first" and "always" differ only after special tokens, where the encoder puts the dummy
    // prefix in both cases (as llama.cpp does).
    const std::string scheme =
        pre.contains("prepend_scheme")
            ? pre.value("prepend_scheme", "always")
            : (pre.value("add_prefix_space", true) ? std::string("always") : std::string("never"));
    spec->add_dummy_prefix = scheme != "never";
  }
  spec->normalizer_json = nlohmann::ordered_json::parse(norm.dump());
  spec->pre_tokenizer_json = nlohmann::ordered_json::parse(pre.dump());
}

// Piece types and scores for a SentencePiece model read from tokenizer.json: special added
// tokens are control pieces, other added tokens user-defined ones, "<0xXX>" byte pieces. The
// scores come back from the merges: a piece scores minus the rank of the first merge that makes
// it, so that merging by score repeats merging by rank (transformers derived the merges from the
// scores in that order). Pieces no merge makes score below all others.
void FinishSentencePiece(const std::string& src, tok::TokenizerSpec* spec) {
  spec->kind = tok::ModelKind::kSentencePieceBpe;
  const size_t n = spec->vocab.size();
  spec->piece_types.assign(n, tok::kPieceNormal);
  for (size_t id = 0; id < n; ++id) {
    if (spec->in_vocab[id] && tok::ByteOfPiece(spec->vocab[id]) >= 0) {
      spec->piece_types[id] = tok::kPieceByte;
    }
  }
  if (spec->unk_id >= 0) spec->piece_types[spec->unk_id] = tok::kPieceUnknown;
  for (tok::AddedToken& t : spec->added) {
    if (!spec->in_vocab[t.id]) spec->vocab[t.id] = t.content;
    spec->piece_types[t.id] = t.special ? tok::kPieceControl : tok::kPieceUserDefined;
    // Control pieces are cut out of the raw text first; user-defined ones are matched by the
    // encoder in the normalized text, as sentencepiece matches them.
    t.normalized = !t.special;
  }
  std::unordered_map<std::string, int32_t> ids;
  ids.reserve(n * 2);
  for (size_t id = 0; id < n; ++id) {
    if (spec->in_vocab[id]) ids.emplace(spec->vocab[id], static_cast<int32_t>(id));
  }
  const float unmade = -static_cast<float>(spec->merges.size()) - 1.0f;
  spec->scores.assign(n, unmade);
  for (size_t rank = 0; rank < spec->merges.size(); ++rank) {
    const auto& [a, b] = spec->merges[rank];
    for (const std::string* piece : {&a, &b}) {
      if (ids.find(*piece) == ids.end()) {
        throw Error(src + ": model.merges[" + std::to_string(rank) + "] (\"" + a + " " + b +
                    "\") uses \"" + *piece + "\", which is not in the vocabulary");
      }
    }
    const auto it = ids.find(a + b);
    if (it == ids.end()) {
      throw Error(src + ": model.merges[" + std::to_string(rank) + "] (\"" + a + " " + b +
                  "\") makes \"" + a + b + "\", which is not in the vocabulary");
    }
    float& score = spec->scores[it->second];
    if (score == unmade) score = -static_cast<float>(rank);
  }
  spec->merges.clear();  // the scores carry them; the exporter derives them again
}

// Normalizer, pre-tokenizer and decoder of a byte-level BPE tokenizer.json.
void LoadByteLevelPipeline(const Json& root, const std::string& src, tok::TokenizerSpec* spec) {
  // Hugging Face's Qwen2 ships an NFC normalizer; awq.cpp does not normalize, which is exact for
  // text already in NFC (what tokenizers and llama.cpp see in practice). Anything else changes
  // the text in ways that must not be skipped silently.
  const auto norm = root.find("normalizer");
  if (norm != root.end() && !norm->is_null()) {
    if (!norm->is_object() || !norm->contains("type") || (*norm)["type"] != "NFC") {
      throw Error(src + ": normalizer " + Show(*norm) + " is not supported (only null or NFC)");
    }
    spec->normalizer_json = nlohmann::ordered_json::parse(norm->dump());
  }

  const Json pre = root.contains("pre_tokenizer") ? root["pre_tokenizer"] : Json();
  const bool byte_level = ParsePreTokenizer(pre, src + ": pre_tokenizer", spec);
  const auto dec = root.find("decoder");
  bool byte_level_decoder = false;
  if (dec != root.end() && !dec->is_null()) {
    if (!dec->is_object() || !dec->contains("type") || (*dec)["type"] != "ByteLevel") {
      throw Error(src + ": decoder " + Show(*dec) + " is not supported (only ByteLevel)");
    }
    byte_level_decoder = true;
  }
  if (!byte_level && !byte_level_decoder) {
    throw Error(src +
                ": neither pre_tokenizer nor decoder is ByteLevel; only byte-level BPE "
                "tokenizers are supported");
  }
  spec->pre_tokenizer_json = nlohmann::ordered_json::parse(pre.dump());
}

void LoadTokenizerJson(const Json& root, const std::string& src, tok::TokenizerSpec* spec) {
  if (!root.is_object()) throw Error(src + ": the top level should be an object");
  const auto model_it = root.find("model");
  if (model_it == root.end() || !model_it->is_object()) {
    throw Error(src + ": model should be an object");
  }
  const Json& model = *model_it;
  const std::string type =
      model.contains("type") ? GetString(model, "type", src + ": model") : "BPE";
  if (type != "BPE") {
    throw Error(src + ": model.type is \"" + type + "\"; only byte-level \"BPE\" is supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      throw Error(src + ": model." + key + " is " + Show(*it) + "; only null is supported");
    }
  }
  // Byte fallback marks a SentencePiece model; byte-level BPE never needs it.
  const bool sentencepiece = GetBool(model, "byte_fallback", false, src + ": model");
  const auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    throw Error(src + ": model.dropout is " + Show(*dropout) + "; only null is supported");
  }
  spec->ignore_merges = GetBool(model, "ignore_merges", false, src + ": model");
  if (sentencepiece && spec->ignore_merges) {
    throw Error(src +
                ": model.ignore_merges is true, which a byte_fallback (SentencePiece) "
                "model does not support");
  }

  const auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    throw Error(src + ": model.vocab should be an object {token: id}");
  }
  for (const auto& [piece, id_json] : vocab->items()) {
    // The field name is only spelled out on failure: this loop runs once per vocabulary entry.
    const int32_t id = IsId(id_json) ? static_cast<int32_t>(id_json.get<int64_t>())
                                     : GetId(id_json, src + ": model.vocab[\"" + piece + "\"]");
    if (static_cast<size_t>(id) >= spec->vocab.size()) {
      spec->vocab.resize(id + 1);
      spec->in_vocab.resize(id + 1, 0);
    }
    if (spec->in_vocab[id]) {
      throw Error(src + ": model.vocab gives id " + std::to_string(id) + " to both \"" +
                  spec->vocab[id] + "\" and \"" + piece + "\"");
    }
    spec->vocab[id] = piece;
    spec->in_vocab[id] = 1;
  }

  const auto merges = model.find("merges");
  if (merges != model.end() && !merges->is_null()) {
    if (!merges->is_array()) throw Error(src + ": model.merges should be an array");
    spec->merges.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      const Json& m = (*merges)[i];
      auto where = [&] { return src + ": model.merges[" + std::to_string(i) + "]"; };
      if (m.is_string()) {
        // "a b": exactly one space, as Hugging Face requires (byte-level pieces spell the space
        // as "Ġ", so it never appears inside one).
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          throw Error(where() + " is \"" + s + "\"; expected two pieces separated by one space");
        }
        spec->merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        spec->merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        throw Error(where() + " should be \"a b\" or [\"a\", \"b\"], got " + Show(m));
      }
    }
  }

  const auto added = root.find("added_tokens");
  if (added != root.end() && !added->is_null()) {
    if (!added->is_array()) throw Error(src + ": added_tokens should be an array");
    for (size_t i = 0; i < added->size(); ++i) {
      const Json& a = (*added)[i];
      const std::string where = src + ": added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object()) throw Error(where + " should be an object, got " + Show(a));
      tok::AddedToken t;
      t.id = GetId(a.contains("id") ? a["id"] : Json(), where + ".id");
      t.content = GetString(a, "content", where);
      t.special = GetBool(a, "special", false, where);
      t.lstrip = GetBool(a, "lstrip", false, where);
      t.rstrip = GetBool(a, "rstrip", false, where);
      t.normalized = GetBool(a, "normalized", !t.special, where);
      if (GetBool(a, "single_word", false, where)) {
        throw Error(where + " (\"" + t.content +
                    "\") has single_word=true, which is not supported");
      }
      if (t.content.empty()) throw Error(where + ".content is empty");
      if (static_cast<size_t>(t.id) >= spec->vocab.size()) {
        spec->vocab.resize(t.id + 1);
        spec->in_vocab.resize(t.id + 1, 0);
      }
      spec->added.push_back(std::move(t));
    }
  }
  if (spec->vocab.empty()) throw Error(src + ": model.vocab is empty");

  if (sentencepiece) {
    ReadSpmPipeline(root, src, spec);
  } else {
    LoadByteLevelPipeline(root, src, spec);
  }

  const auto unk = model.find("unk_token");
  if (unk != model.end() && unk->is_string()) {
    for (size_t id = 0; id < spec->vocab.size(); ++id) {
      if (spec->in_vocab[id] && spec->vocab[id] == unk->get<std::string>()) {
        spec->unk_id = static_cast<int32_t>(id);
      }
    }
  }
  if (root.contains("post_processor")) {
    ParsePostProcessor(root["post_processor"], src + ": post_processor", spec);
  }
  if (sentencepiece) FinishSentencePiece(src, spec);
}

// The id of a token named in tokenizer_config.json: added tokens first, as transformers does.
int32_t LookUp(const tok::TokenizerSpec& spec, const std::string& text, const std::string& where) {
  for (const tok::AddedToken& t : spec.added) {
    if (t.content == text) return t.id;
  }
  for (size_t id = 0; id < spec.vocab.size(); ++id) {
    if (spec.in_vocab[id] && spec.vocab[id] == text) return static_cast<int32_t>(id);
  }
  throw Error(where + " is \"" + text + "\", which is not in the vocabulary");
}

void LoadConfigJson(const Json& config, const std::string& src, tok::TokenizerSpec* spec) {
  if (!config.is_object()) throw Error(src + ": the top level should be an object");
  const std::string where = src + ": ";
  const std::string bos = TokenField(config, "bos_token", src);
  const std::string eos = TokenField(config, "eos_token", src);
  const std::string unk = TokenField(config, "unk_token", src);
  const std::string pad = TokenField(config, "pad_token", src);
  if (!bos.empty()) spec->bos_id = LookUp(*spec, bos, src + ": bos_token");
  if (!eos.empty()) spec->eos_id = LookUp(*spec, eos, src + ": eos_token");
  if (!unk.empty()) spec->unk_id = LookUp(*spec, unk, src + ": unk_token");
  if (!pad.empty()) spec->pad_id = LookUp(*spec, pad, src + ": pad_token");
  // transformers (5.x) rebuilds the post-processor when add_bos_token or add_eos_token is given
  // explicitly: then they, not tokenizer.json, decide.
  if (config.contains("add_bos_token") || config.contains("add_eos_token")) {
    spec->prefix_ids.clear();
    spec->suffix_ids.clear();
    if (GetBool(config, "add_bos_token", false, src) && spec->bos_id >= 0) {
      spec->prefix_ids.push_back(spec->bos_id);
    }
    if (GetBool(config, "add_eos_token", false, src) && spec->eos_id >= 0) {
      spec->suffix_ids.push_back(spec->eos_id);
    }
  }
  const auto tmpl = config.find("chat_template");
  if (tmpl != config.end() && !tmpl->is_null()) {
    if (tmpl->is_string()) {
      spec->chat_template = tmpl->get<std::string>();
    } else if (tmpl->is_array()) {
      // Named templates [{"name": "default", "template": ...}, ...]: the default one.
      for (const Json& t : *tmpl) {
        if (t.is_object() && t.value("name", "") == "default") {
          spec->chat_template = GetString(t, "template", src + ": chat_template[default]");
        }
      }
    } else {
      throw Error(src + ": chat_template should be a string or a list, got " + Show(*tmpl));
    }
  }
  const auto max_len = config.find("model_max_length");
  if (max_len != config.end() && max_len->is_number()) {
    const double v = max_len->get<double>();
    // transformers writes 1e30 for "no limit".
    if (v > 0 && v < 1e15) spec->model_max_length = static_cast<int64_t>(v);
  }
}

tok::TokenizerSpec LoadHfSpec(const std::string& tokenizer_json,
                              const std::string& tokenizer_config_json, const std::string& source) {
  tok::TokenizerSpec spec;
  spec.source = source;
  try {
    LoadTokenizerJson(ParseJson(tokenizer_json, source), source, &spec);
    if (!tokenizer_config_json.empty()) {
      const std::string config_src = source + " (tokenizer_config.json)";
      LoadConfigJson(ParseJson(tokenizer_config_json, config_src), config_src, &spec);
    }
  } catch (const nlohmann::json::exception& e) {
    // Wrong JSON types deep inside a field: still the user's file at fault.
    throw Error(source + ": unexpected JSON value: " + e.what());
  }
  return spec;
}

}  // namespace

Tokenizer Tokenizer::FromHfJsonText(const std::string& tokenizer_json,
                                    const std::string& tokenizer_config_json,
                                    const std::string& source) {
  return BuildTokenizer(LoadHfSpec(tokenizer_json, tokenizer_config_json, source));
}

Tokenizer Tokenizer::FromHfJson(const std::string& tokenizer_json_path,
                                const std::string& tokenizer_config_json_path) {
  const std::string json = ReadFileToString(tokenizer_json_path);
  std::string config;
  if (!tokenizer_config_json_path.empty()) config = ReadFileToString(tokenizer_config_json_path);
  tok::TokenizerSpec spec = LoadHfSpec(json, config, tokenizer_json_path);
  // Newer transformers saves the template next to the config as chat_template.jinja.
  if (spec.chat_template.empty() && !tokenizer_config_json_path.empty()) {
    const auto jinja =
        std::filesystem::path(tokenizer_config_json_path).parent_path() / "chat_template.jinja";
    if (std::filesystem::exists(jinja)) spec.chat_template = ReadFileToString(jinja.string());
  }
  return BuildTokenizer(std::move(spec));
}

Tokenizer Tokenizer::ForModel(const std::string& model_path) {
  namespace fs = std::filesystem;
  if (fs::is_directory(model_path)) {
    const fs::path dir(model_path);
    const fs::path tj = dir / "tokenizer.json", tc = dir / "tokenizer_config.json";
    if (!fs::exists(tj)) throw Error(tj.string() + ": missing (the model folder has no tokenizer)");
    return FromHfJson(tj.string(), fs::exists(tc) ? tc.string() : "");
  }
  return FromGguf(GgufFile::Open(model_path));
}

}  // namespace awq
