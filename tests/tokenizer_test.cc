// Tokenizer unit tests: UTF-8 repair, the tiny tokenizer.json fixture against Hugging Face's ids,
// added-token matching, streaming decode, chat templates and the loaders' error messages.
#include "awq/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "awq/error.h"
#include "core/mapped_file.h"
#include "test_util.h"
#include "tokenizer/utf8.h"

namespace awq {
namespace {

using Json = nlohmann::json;

Json Golden() { return Json::parse(ReadFileToString(test::DataPath("tokenizer_golden.json"))); }

Tokenizer Tiny() {
  return Tokenizer::FromHfJson(test::DataPath("tokenizer_tiny/tokenizer.json"),
                               test::DataPath("tokenizer_tiny/tokenizer_config.json"));
}

using test::ExpectError;

TEST(Utf8, LossyRepairMatchesPythonReplace) {
  std::string out;
  // Python: b"a\xffb\xe2\x82c\xf0\x9f\x98".decode(errors="replace") == "a\ufffdb\ufffdc\ufffd"
  tok::AppendUtf8Lossy(
      "a\xff"
      "b\xe2\x82"
      "c\xf0\x9f\x98",
      true, &out);
  EXPECT_EQ(out,
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD"
            "c\xEF\xBF\xBD");
  out.clear();
  // Surrogates (ED A0..BF) and overlongs (C0 80, E0 80 80) are one U+FFFD per byte.
  tok::AppendUtf8Lossy("\xed\xa0\x80|\xc0\x80|\xe0\x80\x80", true, &out);
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(out, r + r + r + "|" + r + r + "|" + r + r + r);
  // Not final: a cut-short sequence at the end waits.
  out.clear();
  EXPECT_EQ(tok::AppendUtf8Lossy("ok\xf0\x9f", false, &out), 2u);
  EXPECT_EQ(out, "ok");
  EXPECT_TRUE(tok::IsValidUtf8("h\xC3\xA9 \xF0\x9F\x98\x80"));
  EXPECT_FALSE(tok::IsValidUtf8("\xF4\x90\x80\x80"));  // past U+10FFFF
}

TEST(Utf8, ByteLevelMapRoundTripsEveryByte) {
  const auto& map = tok::ByteLevelMap::Get();
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string spelled, back;
  map.EncodeTo(all, &spelled);
  ASSERT_TRUE(map.DecodeTo(spelled, &back));
  EXPECT_EQ(back, all);
  EXPECT_EQ(map.Encode(' '), "\xC4\xA0");    // "Ġ"
  EXPECT_EQ(map.Encode('\n'), "\xC4\x8A");   // "Ċ"
  EXPECT_FALSE(map.DecodeTo("a b", &back));  // a raw space stands for no byte
}

TEST(TinyTokenizer, MatchesHuggingFaceIds) {
  const Json golden = Golden()["tiny"];
  const Tokenizer tok = Tiny();
  EXPECT_EQ(tok.vocab_size(), golden["vocab_size"].get<int>());
  EXPECT_EQ(tok.bos_id(), golden["bos_id"].get<int>());
  EXPECT_EQ(tok.eos_id(), golden["eos_id"].get<int>());
  EXPECT_TRUE(tok.add_bos());
  EXPECT_FALSE(tok.add_eos());
  int n = 0;
  for (const Json& c : golden["cases"]) {
    const std::string text = c["text"];
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.Encode(text), ids) << "text: " << text;
    EXPECT_EQ(tok.Encode(text, /*add_special=*/false),
              c["ids_no_special"].get<std::vector<int32_t>>())
        << "text: " << text;
    EXPECT_EQ(tok.Decode(ids), c["decoded"].get<std::string>()) << "text: " << text;
    EXPECT_EQ(tok.Decode(ids, /*skip_special=*/true), c["decoded_skip_special"].get<std::string>());
    ++n;
  }
  EXPECT_GT(n, 30);
}

TEST(TinyTokenizer, ParseSpecialOffLeavesSpecialTokensAsText) {
  const Tokenizer tok = Tiny();
  const int32_t eot = tok.TokenId("<|eot_id|>");
  const int32_t added = tok.TokenId("[NEW]");
  ASSERT_GE(eot, 0);
  ASSERT_GE(added, 0);
  const auto with = tok.Encode("a<|eot_id|>[NEW]", false, true);
  const auto without = tok.Encode("a<|eot_id|>[NEW]", false, false);
  EXPECT_NE(std::find(with.begin(), with.end(), eot), with.end());
  EXPECT_EQ(std::find(without.begin(), without.end(), eot), without.end());
  // Non-special added tokens are matched either way, as in Hugging Face.
  EXPECT_NE(std::find(without.begin(), without.end(), added), without.end());
  EXPECT_EQ(tok.Decode(without), "a<|eot_id|>[NEW]");
  EXPECT_TRUE(tok.IsSpecial(eot));
  EXPECT_FALSE(tok.IsSpecial(added));
  const auto eos = tok.eos_ids();
  EXPECT_NE(std::find(eos.begin(), eos.end(), eot), eos.end());
}

TEST(TinyTokenizer, InvalidUtf8IsReplacedLikePython) {
  const Tokenizer tok = Tiny();
  // Same ids as the text with each maximal ill-formed subsequence turned into U+FFFD.
  EXPECT_EQ(tok.Encode("ab\xff\xfe cd\xe2\x82", false),
            tok.Encode("ab\xEF\xBF\xBD\xEF\xBF\xBD cd\xEF\xBF\xBD", false));
  EXPECT_EQ(tok.Decode(tok.Encode("x\xc3(y", false)), "x\xEF\xBF\xBD(y");
}

TEST(TinyTokenizer, StreamingDecoderEqualsDecode) {
  const Tokenizer tok = Tiny();
  const std::string text =
      "Emoji: \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD and caf\xC3\xA9 "
      "\xE4\xBD\xA0\xE5\xA5\xBD<|eot_id|> end";
  const auto ids = tok.Encode(text);
  for (bool skip : {false, true}) {
    StreamingDecoder dec(tok, skip);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = dec.Feed(id);
      EXPECT_TRUE(tok::IsValidUtf8(piece));
      streamed += piece;
    }
    streamed += dec.Flush();
    EXPECT_EQ(streamed, tok.Decode(ids, skip));
  }
  // A lone byte token of a multi-byte character stays pending, then flushes as U+FFFD.
  StreamingDecoder dec(tok);
  const int32_t e2 = tok.TokenId(tok::ByteLevelMap::Get().Encode(0xE2));
  ASSERT_GE(e2, 0);
  EXPECT_EQ(dec.Feed(e2), "");
  EXPECT_EQ(dec.Flush(), "\xEF\xBF\xBD");
  EXPECT_THROW(dec.Feed(tok.vocab_size()), Error);
  EXPECT_THROW(tok.Decode({-1}), Error);
}

TEST(TinyTokenizer, ChatTemplateFromConfig) {
  const Tokenizer tok = Tiny();
  const std::string out =
      tok.ApplyChatTemplate({{"system", " Be brief. "}, {"user", "Hi\n"}}, true);
  EXPECT_EQ(out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(TinyTokenizer, ExportRoundTrip) {
  const Tokenizer tok = Tiny();
  const std::string dir = test::MakeTempDir("tok_export");
  WriteHfTokenizerFiles(tok, dir);
  const Tokenizer back =
      Tokenizer::FromHfJson(dir + "/tokenizer.json", dir + "/tokenizer_config.json");
  EXPECT_EQ(back.vocab_size(), tok.vocab_size());
  EXPECT_EQ(back.bos_id(), tok.bos_id());
  EXPECT_EQ(back.eos_id(), tok.eos_id());
  EXPECT_EQ(back.add_bos(), tok.add_bos());
  EXPECT_EQ(back.chat_template(), tok.chat_template());
  const Json golden = Golden();  // a named object: the loop must not outlive a temporary
  for (const Json& c : golden["tiny"]["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(back.Encode(text), tok.Encode(text)) << text;
  }
  const Json map = Json::parse(ReadFileToString(dir + "/special_tokens_map.json"));
  EXPECT_EQ(map["bos_token"]["content"], "<|begin_of_text|>");
}

TEST(ChatTemplate, GoldenRenderingsFromTransformers) {
  int n = 0;
  const Json golden = Golden();
  for (const Json& c : golden["chat"]) {
    std::vector<ChatMessage> messages;
    for (const Json& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    const std::string got =
        RenderChatTemplate(c["template"], c["bos"], c["eos"], messages, c["add_generation_prompt"]);
    EXPECT_EQ(got, c["rendered"].get<std::string>()) << "family " << c["family"];
    ++n;
  }
  EXPECT_EQ(n, 32);
}

TEST(ChatTemplate, ErrorsNameTheProblem) {
  ExpectError(
      [] {
        RenderChatTemplate("{{ messages }}", "", "", {{"user", "x"}}, true);
      },
      {"not recognised", "{{ messages }}"});
  ExpectError(
      [] {
        RenderChatTemplate("[INST] template", "<s>", "</s>", {{"user", "a"}, {"user", "b"}}, false);
      },
      {"alternate", "message 1", "user"});
  ExpectError(
      [] {
        RenderChatTemplate("<|start_header_id|> Cutting Knowledge Date", "", "", {{"user", "a"}},
                           false);
      },
      {"Llama-3.1"});
  // Escaped newlines in the template's literal (as tokenizer_config.json stores Qwen's).
  EXPECT_EQ(RenderChatTemplate("{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
                               "You are Qwen.<|im_end|>\\n' }}{% endif %}",
                               "", "", {{"user", "hi"}}, false),
            "<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n");
}

const char* kMiniJson = R"({
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3},
            "merges": ["a b"]},
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "decoder": {"type": "ByteLevel"}
})";

TEST(HfJson, MiniTokenizerDropsBytesMissingFromTheVocabulary) {
  const Tokenizer tok = Tokenizer::FromHfJsonText(kMiniJson);
  EXPECT_EQ(tok.Encode("ab abc"), (std::vector<int32_t>{2, 3, 2}));  // "c" has no token
  EXPECT_EQ(tok.Decode({2, 3, 2}), "ab ab");
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.bos_id(), -1);
  EXPECT_THROW(tok.ApplyChatTemplate({{"user", "x"}}, true), Error);
}

TEST(HfJson, ErrorsNameTheFieldAndValue) {
  auto load = [](const std::string& json) { Tokenizer::FromHfJsonText(json, "", "t.json"); };
  ExpectError([&] { load("{not json"); }, {"t.json", "not valid JSON"});
  ExpectError([&] { load(R"({"model": {"type": "Unigram", "vocab": []}})"); },
              {"t.json", "model.type", "Unigram"});
  ExpectError(
      [&] {
        load(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]},
                 "pre_tokenizer": {"type": "ByteLevel"}})");
      },
      {"t.json", "model.merges[0]", "\"a\""});
  ExpectError(
      [&] {
        load(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a z"]},
                 "pre_tokenizer": {"type": "ByteLevel"}})");
      },
      {"t.json", "merge 0", "\"z\""});
  ExpectError(
      [&] {
        load(R"({"model": {"type": "BPE", "vocab": {"a": 0}},
                 "pre_tokenizer": {"type": "Whitespace"}})");
      },
      {"t.json", "pre_tokenizer.type", "Whitespace"});
  ExpectError(
      [&] {
        load(R"({"model": {"type": "BPE", "vocab": {"a": 0}},
                 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                   {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"},
                   {"type": "ByteLevel"}]}})");
      },
      {"t.json", "(unclosed", "does not compile"});
  ExpectError(
      [&] {
        load(R"({"model": {"type": "BPE", "vocab": {"a": -4}},
                 "pre_tokenizer": {"type": "ByteLevel"}})");
      },
      {"t.json", "model.vocab[\"a\"]", "-4"});
  ExpectError([&] { Tokenizer::FromHfJsonText(kMiniJson, R"({"bos_token": "<nope>"})", "t.json"); },
              {"t.json", "bos_token", "<nope>"});
  ExpectError([] { Tokenizer::FromHfJson("/nonexistent/tokenizer.json"); },
              {"/nonexistent/tokenizer.json"});
}

// The JSON seeds of fuzz/tokenizer_fuzz.cc must load, or the fuzzer only explores error paths.
TEST(HfJson, FuzzSeedsLoad) {
  const std::string dir = std::string(AWQ_SOURCE_DIR) + "/fuzz/seeds/tokenizer_fuzz/";
  const Tokenizer small = Tokenizer::FromHfJsonText(ReadFileToString(dir + "json_small").substr(1));
  // Prefix <|x|> from the post-processor; "ab"+"c" merged; the Split regex isolates letters;
  // "[y]" swallows the space on its left; "<|x|>" the spaces on its right.
  EXPECT_EQ(small.Encode("abc [y]<|x|>  ab"), (std::vector<int32_t>{11, 9, 12, 11, 8}));
  EXPECT_EQ(small.Decode({9, 5, 0}), "abc a");
  const Tokenizer minimal =
      Tokenizer::FromHfJsonText(ReadFileToString(dir + "json_minimal").substr(1));
  EXPECT_EQ(minimal.Encode("hi hih"), (std::vector<int32_t>{3, 0, 3, 1}));
}

}  // namespace
}  // namespace awq
