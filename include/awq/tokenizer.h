// Tokenizers: byte-level BPE (GPT-2, SmolLM2, Llama-3, Qwen2) from GGUF metadata or a Hugging Face
// tokenizer.json, and SentencePiece BPE (Gemma, Llama-2) from GGUF metadata; with streaming
// decode, chat templates and tokenizer.json export.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "awq/gguf.h"

namespace awq {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

class Tokenizer {
 public:
  // From GGUF metadata (tokenizer.ggml.*). tokenizer.ggml.model picks the model:
  //  - "gpt2": byte-level BPE; tokenizer.ggml.pre picks the pre-tokenizer: "smollm",
  //    "starcoder", "gpt-2"/"gpt2"/"default", "llama-bpe"/"llama3", "qwen2";
  //  - "llama": SentencePiece BPE over tokenizer.ggml.tokens/scores/token_type, encoding as the
  //    sentencepiece library does (identity normalization: spaces become "▁", a leading "▁" only
  //    when tokenizer.ggml.add_space_prefix is true or absent; user-defined pieces matched whole;
  //    byte fallback). add_bos_token defaults to true. A Gemma vocabulary (<start_of_turn>,
  //    <end_of_turn>) without tokenizer.chat_template gets Gemma 3's chat template.
  // Anything else is an awq::Error naming the file and the value.
  static Tokenizer FromGguf(const GgufFile& gguf);
  // From a Hugging Face tokenizer.json (model type BPE with a ByteLevel pre-tokenizer, or
  // SentencePiece BPE as transformers writes it: byte_fallback, spaces replaced by "▁", as
  // Gemma's and awq.cpp's export have it) and, optionally, its tokenizer_config.json (bos/eos
  // tokens, add_bos_token, chat_template).
  static Tokenizer FromHfJson(const std::string& tokenizer_json_path,
                              const std::string& tokenizer_config_json_path = "");
  // The tokenizer that goes with a model path: the GGUF metadata of a .gguf file, or
  // tokenizer.json (+ tokenizer_config.json when present) of a Hugging Face folder.
  static Tokenizer ForModel(const std::string& model_path);
  // Same as FromHfJson, from the JSON texts; `source` names them in error messages.
  static Tokenizer FromHfJsonText(const std::string& tokenizer_json,
                                  const std::string& tokenizer_config_json = "",
                                  const std::string& source = "<tokenizer.json>");

  // Text to ids as Hugging Face's `tokenizer(text)` does. `add_special` adds the model's BOS/EOS
  // (its post-processor); `parse_special` matches special tokens such as "<|im_start|>" in the
  // text (non-special added tokens are always matched). Invalid UTF-8 is first replaced by
  // U+FFFD, one per maximal ill-formed subsequence, as Python's bytes.decode(errors="replace").
  // SentencePiece models give sentencepiece's ids when parse_special is false; with it, control
  // tokens (<start_of_turn>) are cut out first and the text between them encoded alone.
  std::vector<int32_t> Encode(std::string_view text, bool add_special = true,
                              bool parse_special = true) const;
  // Ids to text: the bytes of every token concatenated, ill-formed UTF-8 replaced by U+FFFD.
  // `skip_special` drops special tokens. An id outside [0, vocab_size) is an awq::Error.
  // SentencePiece: "▁" decodes to a space and <0xXX> to its byte; with a dummy prefix, the
  // leading space of the first non-special token is dropped, as sentencepiece does.
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  // The vocabulary entry as stored ("Ġthe" for " the"; SentencePiece: "▁the", "<0x0A>");
  // "" for ids that have none.
  std::string TokenText(int32_t id) const;
  // The bytes a token decodes to (may be a partial UTF-8 sequence).
  const std::string& TokenBytes(int32_t id) const;
  // The id of a vocabulary entry (stored spelling, e.g. "Ġthe"), or -1.
  int32_t TokenId(std::string_view piece) const;
  bool IsSpecial(int32_t id) const;

  int32_t bos_id() const;  // -1 when the model has none
  int32_t eos_id() const;
  int32_t unk_id() const;
  int32_t pad_id() const;
  // EOS plus the other tokens that end a chat turn or a document (<|im_end|>, <|eot_id|>,
  // <|endoftext|>, ...), sorted, for stopping generation.
  std::vector<int32_t> eos_ids() const;
  int vocab_size() const;
  bool add_bos() const;
  bool add_eos() const;
  const std::string& chat_template() const;
  // Where it was loaded from, for messages.
  const std::string& source() const;

  // Renders a conversation with the model's chat template (see RenderChatTemplate).
  std::string ApplyChatTemplate(const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  friend Tokenizer MakeTokenizer(std::shared_ptr<const Impl> impl);
  // Shared by copies: the tables are immutable; the word cache inside is thread-safe.
  std::shared_ptr<const Impl> impl_;
};

// Renders `messages` the way transformers' apply_chat_template renders `chat_template`, for the
// template families awq.cpp recognises by their text (there is no Jinja engine):
//  - ChatML ("<|im_start|>"), with the default system message the template inserts when the
//    conversation has none (SmolLM2, Qwen2);
//  - Llama-3 ("<|start_header_id|>"), content trimmed, bos_token first;
//  - Llama-2 ("[INST]"), with the <<SYS>> block and strict user/assistant alternation;
//  - Gemma ("<start_of_turn>"), "assistant" written "model", a system message prepended to the
//    first user turn (with the separator the template spells, "\n\n" in Gemma 3's).
// Any other template, or a conversation the template would reject, is an awq::Error.
std::string RenderChatTemplate(const std::string& chat_template, const std::string& bos_token,
                               const std::string& eos_token,
                               const std::vector<ChatMessage>& messages,
                               bool add_generation_prompt);

// Turns ids into text one at a time during generation: returns only complete UTF-8 characters
// and keeps the bytes of a character split across tokens until it is complete. The
// concatenation of every Feed() and the final Flush() equals Tokenizer::Decode(ids), except
// that the space a SentencePiece dummy prefix would drop is kept: streamed ids continue a prompt.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special = false)
      : tokenizer_(&tokenizer), skip_special_(skip_special) {}
  std::string Feed(int32_t id);
  // The held bytes, ill-formed ones replaced by U+FFFD; resets the decoder.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of an unfinished UTF-8 character
};

// Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json into `dir` (which
// must exist), each atomically, so that transformers' AutoTokenizer loads the same tokenizer.
// A SentencePiece model is written as transformers converts one (BPE with byte fallback, merges
// derived from the scores, a Replace(" ", "▁") normalizer, user-defined pieces as added tokens).
void WriteHfTokenizerFiles(const Tokenizer& tokenizer, const std::string& dir);

// The tokenizer as GGUF metadata (tokenizer.ggml.* and tokenizer.chat_template), the keys
// llama.cpp's converter writes and Tokenizer::FromGguf reads:
//  - byte-level BPE: model "gpt2", the pre-tokenizer's llama.cpp name ("smollm", "gpt-2",
//    "llama-bpe", "qwen2"), tokens, token types (special added tokens CONTROL, other added tokens
//    USER_DEFINED), merges;
//  - SentencePiece BPE: model "llama", pieces (user-defined ones with "▁" spelled as spaces, as
//    the converter writes them), scores, piece types, add_space_prefix;
// plus the BOS/EOS/UNK/PAD ids, add_bos_token/add_eos_token and the first extra end-of-turn id
// as eot_token_id. The vocabulary is padded to `n_vocab` entries ("[PAD<id>]", UNUSED), the rows
// of the embedding, as the converter pads it. Throws awq::Error, naming the tokenizer's source,
// for a pre-tokenizer llama.cpp has no name for or n_vocab below the tokenizer's size.
std::vector<std::pair<std::string, GgufValue>> TokenizerGgufMetadata(const Tokenizer& tokenizer,
                                                                     int64_t n_vocab);

}  // namespace awq
