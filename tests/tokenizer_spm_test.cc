// SentencePiece BPE parity: Gemma 3's tokenizer from its GGUF must give the sentencepiece
// library's ids (tests/data/gemma3_tokenizer_golden.json, tools/make_spm_golden.py) on prose,
// whole novels and hard cases, decode them back, render Gemma's chat template as transformers
// does; two small vocabularies built here as GGUFs cover the dummy prefix, no byte fallback,
// UNUSED pieces and equal scores against the same library.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/gguf.h"
#include "awq/tokenizer.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace awq {
namespace {

using Json = nlohmann::json;

constexpr const char* kGemmaGguf = "gemma-3-270m-q4_k_m.gguf";

const Json& Golden() {
  static const Json* golden =
      new Json(Json::parse(ReadFileToString(test::DataPath("gemma3_tokenizer_golden.json"))));
  return *golden;
}

// What sentencepiece decodes a text back to: a literal "▁" comes back as a space.
std::string SpaceForLowerBlock(std::string s) {
  static const std::string kBlock = "\xE2\x96\x81";
  for (size_t at = s.find(kBlock); at != std::string::npos; at = s.find(kBlock, at + 1)) {
    s.replace(at, kBlock.size(), " ");
  }
  return s;
}

class Gemma3Tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = test::AssetsDir() + "/models/" + kGemmaGguf;
    if (!test::FileExists(path)) return;
    tok_ = new Tokenizer(Tokenizer::FromGguf(GgufFile::Open(path)));
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (tok_ == nullptr) {
      GTEST_SKIP() << "assets/models/" << kGemmaGguf << " is missing (scripts/setup.sh fetches it)";
    }
  }
  static Tokenizer* tok_;
};

Tokenizer* Gemma3Tokenizer::tok_ = nullptr;

TEST_F(Gemma3Tokenizer, Metadata) {
  const Tokenizer& tok = *tok_;
  const Json& g = Golden();
  EXPECT_EQ(tok.vocab_size(), g["vocab_size"].get<int>());
  EXPECT_EQ(tok.bos_id(), g["bos_id"].get<int>());
  EXPECT_EQ(tok.eos_id(), g["eos_id"].get<int>());
  EXPECT_EQ(tok.add_bos(), g["add_bos"].get<bool>());
  EXPECT_TRUE(tok.add_bos());
  EXPECT_FALSE(tok.add_eos());
  EXPECT_EQ(tok.TokenText(2), "<bos>");
  EXPECT_EQ(tok.TokenId("<start_of_turn>"), 105);
  EXPECT_EQ(tok.TokenId("<end_of_turn>"), 106);
  // <eos> and <end_of_turn> both stop generation.
  EXPECT_EQ(tok.eos_ids(), (std::vector<int32_t>{1, 106}));
  EXPECT_TRUE(tok.IsSpecial(105));
  EXPECT_FALSE(tok.IsSpecial(200));  // <b>, user-defined
  // User-defined whitespace pieces keep sentencepiece's spelling; byte pieces decode to bytes.
  EXPECT_EQ(tok.TokenText(138), "\xE2\x96\x81\xE2\x96\x81");
  EXPECT_EQ(tok.TokenBytes(138), "  ");
  EXPECT_EQ(tok.TokenBytes(tok.TokenId("<0x0A>")), "\n");
  EXPECT_EQ(tok.TokenBytes(tok.TokenId("\xE2\x96\x81the")), " the");
  // add_bos_token: BOS in front with add_special, nothing else.
  const std::vector<int32_t> plain = tok.Encode("Hello world", false);
  std::vector<int32_t> with_bos = {2};
  with_bos.insert(with_bos.end(), plain.begin(), plain.end());
  EXPECT_EQ(tok.Encode("Hello world"), with_bos);
  EXPECT_EQ(tok.Encode(""), std::vector<int32_t>{2});
}

TEST_F(Gemma3Tokenizer, GoldenTextsEncodeLikeSentencepiece) {
  size_t texts = 0, ids_total = 0, matched = 0;
  for (const Json& c : Golden()["cases"]) {
    const std::string text = c["text"];
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> got = tok_->Encode(text, /*add_special=*/false,
                                                  /*parse_special=*/false);
    EXPECT_EQ(got, expected) << c["source"].get<std::string>() << " text: " << text;
    ++texts;
    ids_total += expected.size();
    if (got == expected) ++matched;
  }
  std::printf("[gemma3] %zu of %zu golden texts (%zu ids) match sentencepiece\n", matched, texts,
              ids_total);
  EXPECT_GT(texts, 300u);
}

TEST_F(Gemma3Tokenizer, GoldenTextsRoundTrip) {
  for (const Json& c : Golden()["cases"]) {
    const std::string text = c["text"];
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const std::string expected = SpaceForLowerBlock(text);
    EXPECT_EQ(tok_->Decode(ids), expected) << "text: " << text;
    EXPECT_EQ(tok_->Decode(tok_->Encode(text, false, false)), expected) << "text: " << text;
    // Control tokens decode to their spelling, so parsing them changes nothing but BOS.
    EXPECT_EQ(tok_->Decode(tok_->Encode(text)), "<bos>" + expected) << "text: " << text;
    StreamingDecoder dec(*tok_);
    std::string streamed;
    for (int32_t id : ids) streamed += dec.Feed(id);
    streamed += dec.Flush();
    EXPECT_EQ(streamed, expected) << "text: " << text;
  }
}

TEST_F(Gemma3Tokenizer, NovelsEncodeLikeSentencepiece) {
  for (const Json& novel : Golden()["novels"]) {
    const std::string name = novel["name"];
    const std::string text = ReadFileToString(test::TextPath(name));
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok_->Encode(text, false, false);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[gemma3] %-16s %8zu bytes -> %7zu ids in %.3f s (%.1f MB/s)\n", name.c_str(),
                text.size(), ids.size(), s, text.size() / s / 1e6);
    test::ExpectTokenStream(
        ids, novel["count"].get<size_t>(), novel["first"].get<std::vector<int32_t>>(),
        novel["last"].get<std::vector<int32_t>>(), novel["fnv1a64"].get<std::string>(), name);
    EXPECT_EQ(tok_->Decode(ids), text) << name;
  }
}

// 100k words of prose (about 560 kB of Emma) from an empty word cache, and a 200,000-letter run
// with no word cuts at all, round-trip through encode and decode. Their speed is measured in
// bench/parse_bench.cc (tokenize/gemma3/*: a merge loop gone quadratic shows as a time per byte
// that grows tenfold from the 20,000- to the 200,000-letter run), not asserted here.
TEST_F(Gemma3Tokenizer, LongInputsRoundTrip) {
  const std::string novel = ReadFileToString(test::TextPath("emma"));
  size_t end = 0;
  for (int words = 0; words < 100000 && end < novel.size(); ++words) {
    end = novel.find_first_not_of(" \n", novel.find_first_of(" \n", end));
    if (end == std::string::npos) end = novel.size();
  }
  const std::string text = novel.substr(0, end);
  // A fresh tokenizer, so the word cache starts empty.
  const Tokenizer fresh =
      Tokenizer::FromGguf(GgufFile::Open(test::AssetsDir() + "/models/" + kGemmaGguf));
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = fresh.Encode(text, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[gemma3] 100000 words (%zu bytes) -> %zu ids in %.3f s\n", text.size(), ids.size(),
              s);
  EXPECT_EQ(fresh.Decode(ids), text);
  // A long run without any space (no word cuts, no cache).
  const std::string run(200000, 'a');
  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<int32_t> run_ids = fresh.Encode(run, false);
  const double s1 = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::printf("[gemma3] 200000 'a' -> %zu ids in %.3f s\n", run_ids.size(), s1);
  EXPECT_EQ(fresh.Decode(run_ids), run);
}

TEST_F(Gemma3Tokenizer, ControlTokensOnlyWithParseSpecial) {
  const std::string text = "<start_of_turn>user\nHi there<end_of_turn>\n<bos>x";
  const std::vector<int32_t> literal = tok_->Encode(text, false, /*parse_special=*/false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 105), 0);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 2), 0);
  EXPECT_EQ(tok_->Decode(literal), text);

  // With parse_special the control tokens are cut out and the text between is encoded alone.
  std::vector<int32_t> expected = {105};
  for (const char* piece : {"user\nHi there"}) {
    const auto ids = tok_->Encode(piece, false, false);
    expected.insert(expected.end(), ids.begin(), ids.end());
  }
  expected.push_back(106);
  for (int32_t id : tok_->Encode("\n", false, false)) expected.push_back(id);
  expected.push_back(2);
  for (int32_t id : tok_->Encode("x", false, false)) expected.push_back(id);
  EXPECT_EQ(tok_->Encode(text, false, /*parse_special=*/true), expected);
  EXPECT_EQ(tok_->Decode(expected), text);
  EXPECT_EQ(tok_->Decode(expected, /*skip_special=*/true), "user\nHi there\nx");

  // User-defined pieces (HTML tags, whitespace runs) are matched either way.
  for (bool parse_special : {false, true}) {
    EXPECT_EQ(tok_->Encode("<b>", false, parse_special), std::vector<int32_t>{200});
    EXPECT_EQ(tok_->Encode("  ", false, parse_special), std::vector<int32_t>{138});
    EXPECT_EQ(tok_->Encode("\n\n", false, parse_special), std::vector<int32_t>{108});
  }
}

TEST_F(Gemma3Tokenizer, ChatTemplateMatchesTransformers) {
  const Json& g = Golden();
  EXPECT_EQ(tok_->chat_template(), g["chat_template"].get<std::string>());
  int n = 0;
  for (const Json& c : g["chats"]) {
    std::vector<ChatMessage> messages;
    for (const Json& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    EXPECT_EQ(tok_->ApplyChatTemplate(messages, c["add_generation_prompt"]),
              c["text"].get<std::string>());
    ++n;
  }
  EXPECT_EQ(n, 6);

  const std::vector<ChatMessage> chat = {
      {"system", "You are terse."}, {"user", " What is 2+2? "}, {"assistant", "4"}};
  const std::string expected =
      "<bos><start_of_turn>user\nYou are terse.\n\nWhat is 2+2?<end_of_turn>\n"
      "<start_of_turn>model\n4<end_of_turn>\n";
  EXPECT_EQ(tok_->ApplyChatTemplate(chat, false), expected);
  EXPECT_EQ(tok_->ApplyChatTemplate(chat, true), expected + "<start_of_turn>model\n");

  // The rendered prompt starts with <bos> and has its turn markers as single tokens.
  const auto ids = tok_->Encode(tok_->ApplyChatTemplate(chat, true), /*add_special=*/false);
  EXPECT_EQ(ids.front(), 2);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 105), 3);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 106), 2);

  test::ExpectError(
      [&] {
        tok_->ApplyChatTemplate({{"user", "a"}, {"user", "b"}}, true);
      },
      {"Gemma", "alternate", "message 1", "user"});
}

// tokenizer.json export (what a quantized checkpoint folder carries) read back by awq.cpp
// encodes as the GGUF does; tools/make_spm_golden.py --check-export DIR checks the same files
// with transformers.
TEST_F(Gemma3Tokenizer, ExportedTokenizerJsonReadsBack) {
  const std::string dir = test::MakeTempDir("gemma3_tok");
  const auto t0 = std::chrono::steady_clock::now();
  WriteHfTokenizerFiles(*tok_, dir);
  const Tokenizer back =
      Tokenizer::FromHfJson(dir + "/tokenizer.json", dir + "/tokenizer_config.json");
  std::printf("[gemma3] export + reload: %.2f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  const Json tj = Json::parse(ReadFileToString(dir + "/tokenizer.json"));
  EXPECT_EQ(tj["model"]["type"], "BPE");
  EXPECT_EQ(tj["model"]["byte_fallback"], true);
  EXPECT_EQ(tj["model"]["unk_token"], "<unk>");
  EXPECT_EQ(tj["normalizer"]["type"], "Replace");
  EXPECT_TRUE(tj["pre_tokenizer"].is_null());
  EXPECT_EQ(tj["model"]["vocab"].size(), 262144u);
  EXPECT_GT(tj["model"]["merges"].size(), 500000u);
  const Json config = Json::parse(ReadFileToString(dir + "/tokenizer_config.json"));
  EXPECT_EQ(config["bos_token"], "<bos>");
  EXPECT_EQ(config["add_bos_token"], true);

  EXPECT_EQ(back.vocab_size(), tok_->vocab_size());
  EXPECT_EQ(back.eos_ids(), tok_->eos_ids());
  EXPECT_EQ(back.add_bos(), tok_->add_bos());
  EXPECT_EQ(back.chat_template(), tok_->chat_template());
  EXPECT_EQ(back.TokenText(138), tok_->TokenText(138));
  for (const Json& c : Golden()["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(back.Encode(text, false, false), c["ids"].get<std::vector<int32_t>>())
        << "text: " << text;
    EXPECT_EQ(back.Encode(text), tok_->Encode(text)) << "text: " << text;
  }
  const std::string emma = ReadFileToString(test::TextPath("emma"));
  EXPECT_EQ(test::Hex64(test::Fnv1a64(back.Encode(emma, false))),
            Golden()["novels"][0]["fnv1a64"].get<std::string>());
}

TEST(GemmaChatTemplate, SeparatorAndSystemSupportComeFromTheTemplate) {
  const std::string one_newline =
      "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = "
      "messages[0]['content'] + '\\n' -%}{%- endif -%}<start_of_turn>";
  const std::vector<ChatMessage> chat = {{"system", "S"}, {"user", "U"}};
  EXPECT_EQ(RenderChatTemplate(one_newline, "<bos>", "<eos>", chat, false),
            "<bos><start_of_turn>user\nS\nU<end_of_turn>\n");
  // Gemma 2's template has no system branch.
  const std::string gemma2 =
      "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role "
      "not supported') }}{% endif %}{{ '<start_of_turn>' + role + '\\n' }}";
  EXPECT_EQ(RenderChatTemplate(gemma2, "<bos>", "<eos>", {{"user", "Hi"}}, true),
            "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  test::ExpectError([&] { RenderChatTemplate(gemma2, "<bos>", "<eos>", chat, true); },
                    {"Gemma", "system"});
}

// A GGUF holding only tokenizer metadata, from one of the golden file's small vocabularies.
std::string SmallSpmGguf(const Json& model, bool drop_scores = false) {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (const Json& p : model["pieces"]) {
    std::string piece = p[0];
    const int type = p[2];
    // As llama.cpp's converter writes user-defined pieces: "▁" as a space.
    if (type == 4) piece = SpaceForLowerBlock(piece);
    pieces.push_back(piece);
    scores.push_back(p[1].get<float>());
    types.push_back(type);
  }
  GgufWriter w;
  w.AddMetadata("general.architecture", GgufString("llama"));
  w.AddMetadata("tokenizer.ggml.model", GgufString("llama"));
  w.AddMetadata("tokenizer.ggml.tokens", GgufStringArray(pieces));
  if (!drop_scores) w.AddMetadata("tokenizer.ggml.scores", GgufF32Array(scores));
  w.AddMetadata("tokenizer.ggml.token_type", GgufI32Array(types));
  w.AddMetadata("tokenizer.ggml.unknown_token_id", GgufU32(0));
  w.AddMetadata("tokenizer.ggml.bos_token_id", GgufU32(1));
  w.AddMetadata("tokenizer.ggml.eos_token_id", GgufU32(2));
  w.AddMetadata("tokenizer.ggml.add_space_prefix", GgufBool(model["add_dummy_prefix"].get<bool>()));
  return w.Serialize();
}

Tokenizer ParseSmall(const std::string& image) {
  const GgufFile g =
      GgufFile::Parse(reinterpret_cast<const uint8_t*>(image.data()), image.size(), "t.gguf");
  return Tokenizer::FromGguf(g);
}

TEST(SmallSpmVocabularies, EncodeLikeSentencepiece) {
  int n = 0;
  for (const Json& model : Golden()["tiny"]) {
    const Tokenizer tok = ParseSmall(SmallSpmGguf(model));
    EXPECT_TRUE(tok.add_bos());  // llama.cpp's default for SentencePiece vocabularies
    for (const Json& c : model["cases"]) {
      const std::string text = c["text"];
      const auto expected = c["ids"].get<std::vector<int32_t>>();
      EXPECT_EQ(tok.Encode(text, false, false), expected)
          << model["name"].get<std::string>() << " text: \"" << text << "\"";
      // Twice: the second call is answered by the word cache.
      EXPECT_EQ(tok.Encode(text, false, false), expected);
      const bool has_unk = std::count(expected.begin(), expected.end(), 0) > 0;
      if (!has_unk) {
        EXPECT_EQ(tok.Decode(expected), c["decoded"].get<std::string>())
            << model["name"].get<std::string>() << " text: \"" << text << "\"";
      }
      ++n;
    }
  }
  EXPECT_GT(n, 30);
}

TEST(SmallSpmVocabularies, ExportedTokenizerJsonReadsBack) {
  for (const Json& model : Golden()["tiny"]) {
    const Tokenizer tok = ParseSmall(SmallSpmGguf(model));
    const std::string dir = test::MakeTempDir("small_spm");
    WriteHfTokenizerFiles(tok, dir);
    const Tokenizer back =
        Tokenizer::FromHfJson(dir + "/tokenizer.json", dir + "/tokenizer_config.json");
    const Json tj = Json::parse(ReadFileToString(dir + "/tokenizer.json"));
    EXPECT_EQ(tj["normalizer"]["type"],
              model["add_dummy_prefix"].get<bool>() ? "Sequence" : "Replace");
    for (const Json& c : model["cases"]) {
      const std::string text = c["text"];
      // UNUSED pieces ("da", "dd") have no tokenizer.json equivalent; the reloaded model has
      // them as normal pieces that no merge makes, merged last.
      if (model["name"] == "prefix_unk_unused" && text.find('d') != std::string::npos) continue;
      EXPECT_EQ(back.Encode(text, false, false), c["ids"].get<std::vector<int32_t>>())
          << model["name"].get<std::string>() << " text: \"" << text << "\"";
    }
  }
}

TEST(SmallSpmVocabularies, DummyPrefixFollowsControlTokensAndStreamingKeepsIt) {
  const Json& model = Golden()["tiny"][0];
  ASSERT_TRUE(model["add_dummy_prefix"].get<bool>());
  const Tokenizer tok = ParseSmall(SmallSpmGguf(model));
  const auto a = tok.Encode("a", false, false);  // "▁a"
  EXPECT_EQ(tok.Encode("<s>a", false, true), (std::vector<int32_t>{1, a[0]}));
  EXPECT_EQ(tok.Encode("a"), (std::vector<int32_t>{1, a[0]}));
  EXPECT_EQ(tok.Decode({1, a[0]}), "<s>a");
  EXPECT_EQ(tok.Decode({1, a[0]}, true), "a");
  // Generation continues a prompt, so the streamed text keeps the space.
  StreamingDecoder dec(tok);
  EXPECT_EQ(dec.Feed(a[0]) + dec.Flush(), " a");
}

// The SentencePiece tokenizer.json seed of fuzz/tokenizer_fuzz.cc must load, or the fuzzer only
// explores error paths. Its merges rank "▁a" < "ab" < "▁ab" < "bc" < "abc"; it adds a dummy
// prefix (Prepend) and BOS.
TEST(SmallSpmVocabularies, FuzzSeedLoads) {
  const std::string dir = std::string(AWQ_SOURCE_DIR) + "/fuzz/seeds/tokenizer_fuzz/";
  const Tokenizer tok = Tokenizer::FromHfJsonText(ReadFileToString(dir + "json_spm").substr(1));
  // <s>, "▁ab", "▁ab", "c": "▁abc" is no piece.
  EXPECT_EQ(tok.Encode("ab abc"), (std::vector<int32_t>{1, 265, 265, 262}));
  EXPECT_EQ(tok.Decode({1, 265, 265, 262}), "<s>ab abc");
  // "é" is no piece: its two bytes.
  EXPECT_EQ(tok.Encode("\xC3\xA9", false), (std::vector<int32_t>{259, 3 + 0xC3, 3 + 0xA9}));
}

TEST(SmallSpmVocabularies, LoaderErrorsNameTheFileAndField) {
  const Json& model = Golden()["tiny"][0];
  test::ExpectError([&] { ParseSmall(SmallSpmGguf(model, /*drop_scores=*/true)); },
                    {"t.gguf", "tokenizer.ggml.scores", "llama"});
  GgufWriter w;
  w.AddMetadata("tokenizer.ggml.model", GgufString("bert"));
  w.AddMetadata("tokenizer.ggml.tokens", GgufStringArray({"a"}));
  const std::string bert = w.Serialize();
  test::ExpectError([&] { ParseSmall(bert); }, {"t.gguf", "tokenizer.ggml.model", "bert"});

  GgufWriter bad_type;
  bad_type.AddMetadata("tokenizer.ggml.model", GgufString("llama"));
  bad_type.AddMetadata("tokenizer.ggml.tokens", GgufStringArray({"<unk>", "a"}));
  bad_type.AddMetadata("tokenizer.ggml.scores", GgufF32Array({0, 0}));
  bad_type.AddMetadata("tokenizer.ggml.token_type", GgufI32Array({2, 9}));
  const std::string bad = bad_type.Serialize();
  test::ExpectError([&] { ParseSmall(bad); }, {"t.gguf", "tokenizer.ggml.token_type[1]", "9"});
}

}  // namespace
}  // namespace awq
