// Fuzz target for the tokenizer. The first input byte picks the mode:
//  even: the rest is text for the tiny Llama-3-style tokenizer in tests/data/tokenizer_tiny:
//        encode (bytes need not be UTF-8), decode, stream-decode and render a chat; checks the
//        round trip (text or its U+FFFD repair) and that streaming equals Decode;
//  odd:  the rest is a tokenizer.json text: load it (awq::Error is the expected failure for bad
//        input), then encode and decode a fixed string and the input itself.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "awq/error.h"
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
  if (data[0] % 2 == 0) {
    CheckText(rest);  // any text is valid input: no exception may escape
    return 0;
  }
  try {
    CheckJson(rest);
  } catch (const awq::Error&) {
    // Expected for malformed tokenizer.json; anything else escapes and fails the run.
  }
  return 0;
}
