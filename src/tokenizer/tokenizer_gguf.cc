// Loads a byte-level BPE tokenizer from GGUF metadata (tokenizer.ggml.*), mapping llama.cpp's
// pre-tokenizer names to the regex chains Hugging Face ships for the same models.
#include <string>

#include "awq/error.h"
#include "awq/gguf.h"
#include "tokenizer/tokenizer_impl.h"

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

}  // namespace

Tokenizer Tokenizer::FromGguf(const GgufFile& gguf) {
  const std::string& src = gguf.path();
  const std::string model = gguf.GetString("tokenizer.ggml.model");
  if (model != "gpt2") {
    throw Error(src + ": tokenizer.ggml.model is \"" + model +
                "\"; only \"gpt2\" (byte-level BPE) is supported");
  }
  tok::TokenizerSpec spec;
  spec.source = src;
  spec.vocab = gguf.GetStringArray("tokenizer.ggml.tokens");
  const size_t n = spec.vocab.size();
  if (n == 0) throw Error(src + ": tokenizer.ggml.tokens is empty");
  spec.in_vocab.assign(n, 1);

  std::vector<int64_t> types;
  if (gguf.Has("tokenizer.ggml.token_type")) {
    types = gguf.GetIntArray("tokenizer.ggml.token_type");
    if (types.size() != n) {
      throw Error(src + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                  " entries for " + std::to_string(n) + " tokens");
    }
  }
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

  spec.bos_id = OptionalId(gguf, "tokenizer.ggml.bos_token_id", n);
  spec.eos_id = OptionalId(gguf, "tokenizer.ggml.eos_token_id", n);
  spec.unk_id = OptionalId(gguf, "tokenizer.ggml.unknown_token_id", n);
  spec.pad_id = OptionalId(gguf, "tokenizer.ggml.padding_token_id", n);
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    const int32_t id = OptionalId(gguf, key, n);
    if (id >= 0) spec.extra_eos_ids.push_back(id);
  }
  // Absent flags mean no BOS/EOS, as for GPT-2-style tokenizers in transformers.
  if (gguf.GetBool("tokenizer.ggml.add_bos_token", false) && spec.bos_id >= 0) {
    spec.prefix_ids.push_back(spec.bos_id);
  }
  if (gguf.GetBool("tokenizer.ggml.add_eos_token", false) && spec.eos_id >= 0) {
    spec.suffix_ids.push_back(spec.eos_id);
  }
  spec.chat_template = gguf.GetString("tokenizer.chat_template", "");
  const std::string arch = gguf.GetString("general.architecture", "");
  if (!arch.empty()) {
    spec.model_max_length = static_cast<int64_t>(gguf.GetUint(arch + ".context_length", 0));
  }
  return BuildTokenizer(std::move(spec));
}

}  // namespace awq
