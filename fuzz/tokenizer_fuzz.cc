// Fuzz target for the tokenizer. The first input byte picks the mode:
//  0 mod 4: the rest is text for the tiny Llama-3-style tokenizer in tests/data/tokenizer_tiny:
//        encode (bytes need not be UTF-8), decode, stream-decode and render a chat; checks the
//        round trip (text or its U+FFFD repair) and that streaming equals Decode;
//  2 mod 4: the same for SentencePiece BPE: a small Gemma-like vocabulary built here (byte
//        fallback, user-defined pieces, control tokens, a piece with an inner "▁") and, when
//        assets/models/gemma-3-270m-q4_k_m.gguf is present, Gemma 3's own;
//  odd:  the rest is a tokenizer.json text: load it (awq::Error is the expected failure for bad
//        input), then encode and decode a fixed string and the input itself.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/gguf.h"
#include "awq/tokenizer.h"
#include "core/mapped_file.h"
#include "tokenizer/utf8.h"

namespace {

const awq::Tokenizer& TinyTokenizer() {
  static const awq::Tokenizer tok = [] {
    const std::string dir = std::string(AWQ_SOURCE_DIR) + "/tests/data/tokenizer_tiny/";
    return awq::Tokenizer::FromHfJson(dir + "tokenizer.json", dir + "tokenizer_config.json");
  }();
  return tok;
}

// A few dozen pieces in Gemma's style: all 256 byte pieces (so every text round-trips), control
// tokens, user-defined whitespace runs and an HTML tag, merges by score, and ">▁<" whose inner
// "▁" stops the encoder from cutting the text into words there.
awq::Tokenizer SmallSpmTokenizer() {
  std::vector<std::string> pieces = {"<pad>", "<eos>",           "<bos>",
                                     "<unk>", "<start_of_turn>", "<end_of_turn>"};
  std::vector<int32_t> types = {3, 3, 3, 2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    pieces.push_back(name);
    types.push_back(6);
  }
  // User-defined pieces, spaces written as llama.cpp's converter writes them.
  for (const char* p : {"\n", "\n\n", "  ", "   ", "\t", "<b>"}) {
    pieces.push_back(p);
    types.push_back(4);
  }
  const std::string sp = "\xE2\x96\x81";
  const std::string e_acute = "\xC3\xA9";
  const std::vector<std::string> normal = {
      sp,       "a",   "b",      "c",          ">",       "<",      e_acute,
      sp + "a", "ab",  "bc",     "abc",        sp + "ab", ">" + sp, ">" + sp + "<",
      "aa",     "aaa", sp + "c", e_acute + "a"};
  for (const std::string& p : normal) {
    pieces.push_back(p);
    types.push_back(1);
  }
  std::vector<float> scores(pieces.size(), 0.0f);
  for (size_t i = 0; i < scores.size(); ++i) {
    if (types[i] == 1) scores[i] = -static_cast<float>(i % 7);  // equal scores on purpose
  }
  awq::GgufWriter w;
  w.AddMetadata("tokenizer.ggml.model", awq::GgufString("llama"));
  w.AddMetadata("tokenizer.ggml.tokens", awq::GgufStringArray(pieces));
  w.AddMetadata("tokenizer.ggml.scores", awq::GgufF32Array(scores));
  w.AddMetadata("tokenizer.ggml.token_type", awq::GgufI32Array(types));
  w.AddMetadata("tokenizer.ggml.bos_token_id", awq::GgufU32(2));
  w.AddMetadata("tokenizer.ggml.eos_token_id", awq::GgufU32(1));
  w.AddMetadata("tokenizer.ggml.unknown_token_id", awq::GgufU32(3));
  w.AddMetadata("tokenizer.ggml.add_space_prefix", awq::GgufBool(false));
  const std::string image = w.Serialize();
  return awq::Tokenizer::FromGguf(awq::GgufFile::Parse(
      reinterpret_cast<const uint8_t*>(image.data()), image.size(), "<small spm>"));
}

const std::vector<awq::Tokenizer>& SpmTokenizers() {
  static const std::vector<awq::Tokenizer> toks = [] {
    std::vector<awq::Tokenizer> v = {SmallSpmTokenizer()};
    const std::string gemma =
        std::string(AWQ_SOURCE_DIR) + "/assets/models/gemma-3-270m-q4_k_m.gguf";
    if (std::FILE* f = std::fopen(gemma.c_str(), "rb")) {
      std::fclose(f);
      v.push_back(awq::Tokenizer::FromGguf(awq::GgufFile::Open(gemma)));
    }
    return v;
  }();
  return toks;
}

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n", what);
    std::abort();
  }
}

void CheckText(const std::string& text) {
  const awq::Tokenizer& tok = TinyTokenizer();
  std::string expected;  // what the text decodes back to: itself, repaired
  awq::tok::AppendUtf8Lossy(text, /*final=*/true, &expected);
  // Without special-token parsing nothing swallows whitespace (lstrip/rstrip), so the ids spell
  // out the text exactly.
  const std::vector<int32_t> plain =
      tok.Encode(text, /*add_special=*/false, /*parse_special=*/false);
  Require(tok.Decode(plain) == expected, "Decode(Encode(text)) != text");
  const std::vector<int32_t> ids = tok.Encode(text);
  for (int32_t id : ids) Require(id >= 0 && id < tok.vocab_size(), "id out of range");
  for (bool skip : {false, true}) {
    awq::StreamingDecoder dec(tok, skip);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = dec.Feed(id);
      Require(awq::tok::IsValidUtf8(piece), "streamed piece is not UTF-8");
      streamed += piece;
    }
    streamed += dec.Flush();
    Require(streamed == tok.Decode(ids, skip), "streaming decode != Decode");
  }
  const std::string chat = tok.ApplyChatTemplate({{"user", text}}, true);
  Require(!chat.empty(), "empty chat rendering");
}

void CheckSpmText(const std::string& text) {
  std::string repaired;
  awq::tok::AppendUtf8Lossy(text, /*final=*/true, &repaired);
  // What sentencepiece decodes back: a literal "▁" comes back as a space.
  std::string expected;
  for (size_t i = 0; i < repaired.size(); ++i) {
    if (repaired.compare(i, 3, "\xE2\x96\x81") == 0) {
      expected.push_back(' ');
      i += 2;
    } else {
      expected.push_back(repaired[i]);
    }
  }
  for (const awq::Tokenizer& tok : SpmTokenizers()) {
    const std::vector<int32_t> plain =
        tok.Encode(text, /*add_special=*/false, /*parse_special=*/false);
    for (int32_t id : plain) Require(id >= 0 && id < tok.vocab_size(), "id out of range");
    Require(tok.Decode(plain) == expected, "SPM: Decode(Encode(text)) != text");
    // Control tokens decode to their spelling, so parsing them only adds BOS.
    const std::vector<int32_t> ids = tok.Encode(text);
    Require(tok.Decode(ids) == tok.TokenText(tok.bos_id()) + expected,
            "SPM: Decode(Encode(text, parse_special)) != <bos> + text");
    for (bool skip : {false, true}) {
      awq::StreamingDecoder dec(tok, skip);
      std::string streamed;
      for (int32_t id : ids) streamed += dec.Feed(id);
      streamed += dec.Flush();
      Require(streamed == tok.Decode(ids, skip), "SPM: streaming decode != Decode");
    }
    const std::string chat = tok.ApplyChatTemplate({{"system", text}, {"user", text}}, true);
    Require(chat.find("<start_of_turn>model\n") != std::string::npos, "SPM: no generation prompt");
  }
}

void CheckJson(const std::string& json) {
  const awq::Tokenizer tok = awq::Tokenizer::FromHfJsonText(json, "", "<fuzz>");
  for (const std::string& text :
       {std::string("Hello world, 123 don't\n  <|x|> caf\xC3\xA9"), json.substr(0, 256)}) {
    const std::vector<int32_t> ids = tok.Encode(text);
    for (int32_t id : ids) Require(id >= 0 && id < tok.vocab_size(), "id out of range");
    const std::string back = tok.Decode(ids);
    Require(awq::tok::IsValidUtf8(back), "Decode returned invalid UTF-8");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  // Any text is valid input: no exception may escape.
  if (data[0] % 4 == 0) {
    CheckText(rest);
    return 0;
  }
  if (data[0] % 4 == 2) {
    CheckSpmText(rest);
    return 0;
  }
  try {
    CheckJson(rest);
  } catch (const awq::Error&) {
    // Expected for malformed tokenizer.json; anything else escapes and fails the run.
  }
  return 0;
}
