// Loads a tokenizer from GGUF metadata (tokenizer.ggml.*): byte-level BPE, mapping llama.cpp's
// pre-tokenizer names to the regex chains Hugging Face ships for the same models, or
// SentencePiece BPE from the pieces, scores and token types.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "awq/error.h"
#include "awq/gguf.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/tokenizer_spm.h"

namespace awq {
namespace {

using Json = nlohmann::ordered_json;

// GGUF token types (llama.cpp's llama_token_type).
enum GgufTokenType : int64_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

Json ByteLevelJson(bool use_regex) {
  return Json{{"type", "ByteLevel"},
              {"add_prefix_space", false},
              {"trim_offsets", true},
              {"use_regex", use_regex}};
}

Json SplitJson(const char* pattern) {
  return Json{{"type", "Split"},
              {"pattern", Json{{"Regex", pattern}}},
              {"behavior", "Isolated"},
              {"invert", false}};
}

// Sets the pre-tokenizer chain for tokenizer.ggml.pre, in the form each model's own
// tokenizer.json has it, so that the export round-trips through transformers.
void SetPreTokenizer(const std::string& pre, const std::string& src, tok::TokenizerSpec* spec) {
  if (pre == "smollm" || pre == "starcoder") {
    // Digits(individual_digits) then GPT-2's ByteLevel regex.
    spec->patterns = {tok::kDigitPattern, tok::kGpt2Pattern};
    spec->pre_tokenizer_json =
        Json{{"type", "Sequence"},
             {"pretokenizers", Json::array({Json{{"type", "Digits"}, {"individual_digits", true}},
                                            ByteLevelJson(true)})}};
  } else if (pre == "gpt-2" || pre == "gpt2" || pre == "default") {
    spec->patterns = {tok::kGpt2Pattern};
    spec->pre_tokenizer_json = ByteLevelJson(true);
  } else if (pre == "llama-bpe" || pre == "llama3") {
    spec->patterns = {tok::kLlama3Pattern};
    spec->pre_tokenizer_json = Json{
        {"type", "Sequence"},
        {"pretokenizers", Json::array({SplitJson(tok::kLlama3Pattern), ByteLevelJson(false)})}};
    spec->ignore_merges = true;  // as Llama-3's tokenizer.json and llama.cpp do
  } else if (pre == "qwen2") {
    spec->patterns = {tok::kQwen2Pattern};
    spec->pre_tokenizer_json =
        Json{{"type", "Sequence"},
             {"pretokenizers", Json::array({SplitJson(tok::kQwen2Pattern), ByteLevelJson(false)})}};
    spec->normalizer_json = Json{{"type", "NFC"}};
  } else {
    throw Error(src + ": tokenizer.ggml.pre is \"" + pre +
                "\"; supported: smollm, starcoder, gpt-2, default, llama-bpe, llama3, qwen2");
  }
}

int32_t OptionalId(const GgufFile& gguf, const char* key, size_t vocab) {
  if (!gguf.Has(key)) return -1;
  const int64_t id = gguf.GetInt(key);
  // llama.cpp writes -1 (as uint32 0xFFFFFFFF) for "none" in some converters.
  if (id == -1 || id == 0xFFFFFFFFll) return -1;
  if (id < 0 || static_cast<uint64_t>(id) >= vocab) {
    throw Error(gguf.path() + ": metadata key " + key + " is " + std::to_string(id) +
                ", outside the vocabulary of " + std::to_string(vocab) + " tokens");
  }
  return static_cast<int32_t>(id);
}

// The token types, one per token; empty when the file has none.
std::vector<int64_t> TokenTypes(const GgufFile& gguf, size_t n) {
  const std::string& src = gguf.path();
  std::vector<int64_t> types;
  if (!gguf.Has("tokenizer.ggml.token_type")) return types;
  types = gguf.GetIntArray("tokenizer.ggml.token_type");
  if (types.size() != n) {
    throw Error(src + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                " entries for " + std::to_string(n) + " tokens");
  }
  return types;
}

// Ids, flags, chat template and context length: the keys both tokenizer models share.
void ReadCommonKeys(const GgufFile& gguf, bool add_bos_default, tok::TokenizerSpec* spec) {
  const size_t n = spec->vocab.size();
  spec->bos_id = OptionalId(gguf, "tokenizer.ggml.bos_token_id", n);
  spec->eos_id = OptionalId(gguf, "tokenizer.ggml.eos_token_id", n);
  spec->unk_id = OptionalId(gguf, "tokenizer.ggml.unknown_token_id", n);
  spec->pad_id = OptionalId(gguf, "tokenizer.ggml.padding_token_id", n);
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    const int32_t id = OptionalId(gguf, key, n);
    if (id >= 0) spec->extra_eos_ids.push_back(id);
  }
  if (gguf.GetBool("tokenizer.ggml.add_bos_token", add_bos_default) && spec->bos_id >= 0) {
    spec->prefix_ids.push_back(spec->bos_id);
  }
  if (gguf.GetBool("tokenizer.ggml.add_eos_token", false) && spec->eos_id >= 0) {
    spec->suffix_ids.push_back(spec->eos_id);
  }
  spec->chat_template = gguf.GetString("tokenizer.chat_template", "");
  const std::string arch = gguf.GetString("general.architecture", "");
  if (!arch.empty()) {
    spec->model_max_length = static_cast<int64_t>(gguf.GetUint(arch + ".context_length", 0));
  }
}

Tokenizer ByteLevelFromGguf(const GgufFile& gguf) {
  const std::string& src = gguf.path();
  tok::TokenizerSpec spec;
  spec.source = src;
  spec.vocab = gguf.GetStringArray("tokenizer.ggml.tokens");
  const size_t n = spec.vocab.size();
  if (n == 0) throw Error(src + ": tokenizer.ggml.tokens is empty");
  spec.in_vocab.assign(n, 1);

  const std::vector<int64_t> types = TokenTypes(gguf, n);
  for (size_t id = 0; id < types.size(); ++id) {
    // CONTROL tokens are the special ones (<|im_start|>); USER_DEFINED ones are matched in text
    // as they are but decode like text. Both are Hugging Face added tokens.
    if (types[id] != kControl && types[id] != kUserDefined) continue;
    if (spec.vocab[id].empty()) continue;
    tok::AddedToken t;
    t.id = static_cast<int32_t>(id);
    t.content = spec.vocab[id];
    t.special = types[id] == kControl;
    t.normalized = false;
    spec.added.push_back(std::move(t));
  }

  const std::vector<std::string> merges = gguf.GetStringArray("tokenizer.ggml.merges");
  spec.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& m = merges[i];
    const size_t sp = m.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == m.size() ||
        m.find(' ', sp + 1) != std::string::npos) {
      throw Error(src + ": tokenizer.ggml.merges[" + std::to_string(i) + "] is \"" + m +
                  "\"; expected two pieces separated by one space");
    }
    spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }

  SetPreTokenizer(gguf.GetString("tokenizer.ggml.pre", "default"), src, &spec);
  // Absent flags mean no BOS/EOS, as for GPT-2-style tokenizers in transformers.
  ReadCommonKeys(gguf, /*add_bos_default=*/false, &spec);
  return BuildTokenizer(std::move(spec));
}

// Gemma's chat template as Google ships it with Gemma 3 (tokenizer_config.json); used for a
// Gemma vocabulary whose GGUF carries no tokenizer.chat_template.
constexpr const char* kGemmaChatTemplate =
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate "
    "user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n";

// A SentencePiece model converted by llama.cpp (tokenizer.ggml.model "llama"): pieces, scores
// and types as the tokenizer.model had them, except that the converter wrote user-defined
// pieces with "▁" turned back into spaces ("▁▁" as "  "), which is undone here so that they
// match the normalized text as sentencepiece matches them.
Tokenizer SentencePieceFromGguf(const GgufFile& gguf) {
  const std::string& src = gguf.path();
  tok::TokenizerSpec spec;
  spec.source = src;
  spec.kind = tok::ModelKind::kSentencePieceBpe;
  spec.vocab = gguf.GetStringArray("tokenizer.ggml.tokens");
  const size_t n = spec.vocab.size();
  if (n == 0) throw Error(src + ": tokenizer.ggml.tokens is empty");
  spec.in_vocab.assign(n, 1);

  if (!gguf.Has("tokenizer.ggml.scores")) {
    throw Error(src +
                ": tokenizer.ggml.model is \"llama\" (SentencePiece BPE) but "
                "tokenizer.ggml.scores, which orders its merges, is missing");
  }
  const std::vector<double> scores = gguf.GetFloatArray("tokenizer.ggml.scores");
  if (scores.size() != n) {
    throw Error(src + ": tokenizer.ggml.scores has " + std::to_string(scores.size()) +
                " entries for " + std::to_string(n) + " tokens");
  }
  spec.scores.assign(scores.begin(), scores.end());
  for (size_t id = 0; id < n; ++id) {
    if (std::isnan(spec.scores[id])) {
      throw Error(src + ": tokenizer.ggml.scores[" + std::to_string(id) + "] is NaN");
    }
  }
  std::vector<int64_t> types = TokenTypes(gguf, n);
  if (types.empty()) types.assign(n, kNormal);
  for (size_t id = 0; id < n; ++id) {
    // sentencepiece's types are GGUF's 1..6; llama.cpp's 0 (undefined) has no meaning here.
    if (types[id] < kNormal || types[id] > kByte) {
      throw Error(src + ": tokenizer.ggml.token_type[" + std::to_string(id) + "] is " +
                  std::to_string(types[id]) + "; expected 1 (normal) to 6 (byte)");
    }
  }
  spec.piece_types.assign(types.begin(), types.end());

  for (size_t id = 0; id < n; ++id) {
    std::string& piece = spec.vocab[id];
    if (piece.empty()) {
      throw Error(src + ": tokenizer.ggml.tokens[" + std::to_string(id) +
                  "] is empty; a SentencePiece piece must not be");
    }
    if (types[id] == kUserDefined) {
      std::string spelled;
      for (const char c : piece) {
        if (c == ' ') {
          spelled += tok::kSpaceSymbol;
        } else {
          spelled.push_back(c);
        }
      }
      piece = std::move(spelled);
    }
    if (types[id] != kControl && types[id] != kUserDefined) continue;
    // Control tokens are special (matched only with parse_special); user-defined ones are
    // matched in the normalized text, by the SentencePiece encoder itself.
    tok::AddedToken t;
    t.id = static_cast<int32_t>(id);
    t.content = piece;
    t.special = types[id] == kControl;
    t.normalized = types[id] == kUserDefined;
    spec.added.push_back(std::move(t));
  }
  // llama.cpp's defaults for SentencePiece vocabularies: BOS on, the dummy prefix on.
  ReadCommonKeys(gguf, /*add_bos_default=*/true, &spec);
  spec.add_dummy_prefix = gguf.GetBool("tokenizer.ggml.add_space_prefix", true);
  if (spec.chat_template.empty()) {
    bool has_start = false, has_end = false;
    for (const tok::AddedToken& t : spec.added) {
      has_start |= t.special && t.content == "<start_of_turn>";
      has_end |= t.special && t.content == "<end_of_turn>";
    }
    if (has_start && has_end) spec.chat_template = kGemmaChatTemplate;
  }
  return BuildTokenizer(std::move(spec));
}

}  // namespace

namespace {

// llama.cpp's name for a byte-level pre-tokenizer chain (the inverse of SetPreTokenizer).
std::string PreTokenizerName(const tok::TokenizerSpec& spec) {
  const std::vector<std::string>& p = spec.patterns;
  if (p.size() == 2 && p[0] == tok::kDigitPattern && p[1] == tok::kGpt2Pattern) return "smollm";
  if (p.size() == 1 && p[0] == tok::kGpt2Pattern) return "gpt-2";
  if (p.size() == 1 && p[0] == tok::kLlama3Pattern) return "llama-bpe";
  if (p.size() == 1 && p[0] == tok::kQwen2Pattern) return "qwen2";
  std::string chain;
  for (const std::string& s : p) chain += (chain.empty() ? "" : ", ") + ("/" + s + "/");
  throw Error(spec.source + ": the pre-tokenizer (" + (chain.empty() ? "none" : chain) +
              ") has no llama.cpp name (tokenizer.ggml.pre); GGUF output supports the chains of "
              "smollm, gpt-2, llama-bpe and qwen2");
}

}  // namespace

std::vector<std::pair<std::string, GgufValue>> TokenizerGgufMetadata(const Tokenizer& tokenizer,
                                                                     int64_t n_vocab) {
  const tok::TokenizerSpec& spec = tokenizer.impl().spec;
  const int64_t n = static_cast<int64_t>(spec.vocab.size());
  if (n_vocab < n) {
    throw Error(spec.source + ": the tokenizer has " + std::to_string(n) +
                " tokens but the model's embedding only " + std::to_string(n_vocab) + " rows");
  }
  const bool spm = spec.kind == tok::ModelKind::kSentencePieceBpe;
  std::vector<std::string> tokens(static_cast<size_t>(n_vocab));
  std::vector<int32_t> types(static_cast<size_t>(n_vocab), kUnused);
  std::vector<float> scores;
  if (spm) scores.assign(static_cast<size_t>(n_vocab), -1000.0f);
  for (int64_t id = 0; id < n_vocab; ++id) {
    const size_t i = static_cast<size_t>(id);
    if (id >= n) {
      tokens[i] = "[PAD" + std::to_string(id) + "]";
      continue;
    }
    if (spm) {
      types[i] = spec.piece_types[i];
      scores[i] = spec.scores[i];
      std::string piece = spec.vocab[i];
      if (types[i] == kUserDefined) {
        // The converter writes user-defined pieces with "▁" as spaces.
        std::string spaced;
        for (size_t k = 0; k < piece.size();) {
          if (piece.compare(k, tok::kSpaceSymbol.size(), tok::kSpaceSymbol) == 0) {
            spaced.push_back(' ');
            k += tok::kSpaceSymbol.size();
          } else {
            spaced.push_back(piece[k++]);
          }
        }
        piece = std::move(spaced);
      }
      tokens[i] = std::move(piece);
    } else {
      tokens[i] = tokenizer.impl().token_text[i];
      types[i] = kNormal;
      if (tokens[i].empty()) {
        tokens[i] = "[PAD" + std::to_string(id) + "]";
        types[i] = kUnused;
      }
    }
  }
  if (!spm) {
    for (const tok::AddedToken& t : spec.added) {
      types[static_cast<size_t>(t.id)] = t.special ? kControl : kUserDefined;
    }
  }

  std::vector<std::pair<std::string, GgufValue>> kv;
  kv.emplace_back("tokenizer.ggml.model", GgufString(spm ? "llama" : "gpt2"));
  kv.emplace_back("tokenizer.ggml.pre", GgufString(spm ? "default" : PreTokenizerName(spec)));
  kv.emplace_back("tokenizer.ggml.tokens", GgufStringArray(tokens));
  if (spm) kv.emplace_back("tokenizer.ggml.scores", GgufF32Array(scores));
  kv.emplace_back("tokenizer.ggml.token_type", GgufI32Array(types));
  if (!spm) {
    std::vector<std::string> merges;
    merges.reserve(spec.merges.size());
    for (const auto& [a, b] : spec.merges) merges.push_back(a + " " + b);
    kv.emplace_back("tokenizer.ggml.merges", GgufStringArray(merges));
  }
  const auto add_id = [&](const char* key, int32_t id) {
    if (id >= 0) kv.emplace_back(key, GgufU32(static_cast<uint32_t>(id)));
  };
  add_id("tokenizer.ggml.bos_token_id", spec.bos_id);
  add_id("tokenizer.ggml.eos_token_id", spec.eos_id);
  add_id("tokenizer.ggml.unknown_token_id", spec.unk_id);
  add_id("tokenizer.ggml.padding_token_id", spec.pad_id);
  for (const int32_t id : spec.extra_eos_ids) {
    if (id != spec.eos_id) {
      add_id("tokenizer.ggml.eot_token_id", id);
      break;
    }
  }
  const auto has = [](const std::vector<int32_t>& ids, int32_t id) {
    return id >= 0 && std::find(ids.begin(), ids.end(), id) != ids.end();
  };
  kv.emplace_back("tokenizer.ggml.add_bos_token", GgufBool(has(spec.prefix_ids, spec.bos_id)));
  kv.emplace_back("tokenizer.ggml.add_eos_token", GgufBool(has(spec.suffix_ids, spec.eos_id)));
  kv.emplace_back("tokenizer.ggml.add_space_prefix", GgufBool(spm && spec.add_dummy_prefix));
  if (!spec.chat_template.empty()) {
    kv.emplace_back("tokenizer.chat_template", GgufString(spec.chat_template));
  }
  return kv;
}

Tokenizer Tokenizer::FromGguf(const GgufFile& gguf) {
  const std::string model = gguf.GetString("tokenizer.ggml.model");
  if (model == "gpt2") return ByteLevelFromGguf(gguf);
  if (model == "llama") return SentencePieceFromGguf(gguf);
  throw Error(gguf.path() + ": tokenizer.ggml.model is \"" + model +
              "\"; supported: \"gpt2\" (byte-level BPE), \"llama\" (SentencePiece BPE)");
}

}  // namespace awq
