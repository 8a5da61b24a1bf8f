// SmolLM2 tokenizer parity: ids from the GGUF and from our tokenizer.json export must equal the
// reference tokenizer's (tools/make_tokenizer_golden.py) on the six Austen novels and on tricky
// strings; also times encoding the novels.
#include <gtest/gtest.h>

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

class SmolLm2Tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    golden_ = new Json(Json::parse(ReadFileToString(test::DataPath("tokenizer_golden.json"))));
    const GgufFile gguf = GgufFile::Open(test::ModelPath());
    gguf_tok_ = new Tokenizer(Tokenizer::FromGguf(gguf));
    export_dir_ = new std::string(test::MakeTempDir("smollm2_tok"));
    WriteHfTokenizerFiles(*gguf_tok_, *export_dir_);
    json_tok_ = new Tokenizer(Tokenizer::FromHfJson(*export_dir_ + "/tokenizer.json",
                                                    *export_dir_ + "/tokenizer_config.json"));
  }
  static void TearDownTestSuite() {
    delete golden_;
    delete gguf_tok_;
    delete json_tok_;
    delete export_dir_;
  }

  // Compares one novel's ids with the golden record.
  static void CheckNovel(const Tokenizer& tok, const Json& novel, const char* label) {
    const std::string name = novel["name"];
    const std::string text = ReadFileToString(test::TextPath(name));
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok.Encode(text);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[%s] %-16s %8zu bytes -> %7zu ids in %.3f s (%.1f MB/s)\n", label, name.c_str(),
                text.size(), ids.size(), s, text.size() / s / 1e6);
    test::ExpectTokenStream(
        ids, novel["count"].get<size_t>(), novel["first"].get<std::vector<int32_t>>(),
        novel["last"].get<std::vector<int32_t>>(), novel["fnv1a64"].get<std::string>(), name);
  }

  static Json* golden_;
  static Tokenizer* gguf_tok_;
  static Tokenizer* json_tok_;
  static std::string* export_dir_;
};

Json* SmolLm2Tokenizer::golden_ = nullptr;
Tokenizer* SmolLm2Tokenizer::gguf_tok_ = nullptr;
Tokenizer* SmolLm2Tokenizer::json_tok_ = nullptr;
std::string* SmolLm2Tokenizer::export_dir_ = nullptr;

TEST_F(SmolLm2Tokenizer, MetadataFromGguf) {
  const Tokenizer& tok = *gguf_tok_;
  EXPECT_EQ(tok.vocab_size(), 49152);
  EXPECT_EQ(tok.vocab_size(), (*golden_)["vocab_size"].get<int>());
  EXPECT_EQ(tok.bos_id(), 1);  // <|im_start|>
  EXPECT_EQ(tok.eos_id(), 2);  // <|im_end|>
  EXPECT_FALSE(tok.add_bos());
  EXPECT_FALSE(tok.add_eos());
  EXPECT_EQ(tok.TokenText(1), "<|im_start|>");
  EXPECT_EQ(tok.TokenId("Ġthe"), tok.Encode(" the")[0]);
  EXPECT_EQ(tok.eos_ids(), (std::vector<int32_t>{0, 2}));  // <|endoftext|>, <|im_end|>
  EXPECT_TRUE(tok.IsSpecial(0));
  EXPECT_FALSE(tok.IsSpecial(100));
  EXPECT_NE(tok.chat_template().find("SmolLM"), std::string::npos);
}

TEST_F(SmolLm2Tokenizer, TrickyStringsFromGguf) {
  for (const Json& c : (*golden_)["tricky"]) {
    const std::string text = c["text"];
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(gguf_tok_->Encode(text), ids) << "text: " << text;
    EXPECT_EQ(gguf_tok_->Decode(ids), c["decoded"].get<std::string>()) << "text: " << text;
    EXPECT_EQ(gguf_tok_->Decode(ids, true), c["decoded_skip_special"].get<std::string>());
  }
}

TEST_F(SmolLm2Tokenizer, TrickyStringsFromExportedJson) {
  for (const Json& c : (*golden_)["tricky"]) {
    const std::string text = c["text"];
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(json_tok_->Encode(text), ids) << "text: " << text;
    EXPECT_EQ(json_tok_->Decode(ids), c["decoded"].get<std::string>()) << "text: " << text;
  }
}

TEST_F(SmolLm2Tokenizer, NovelsFromGguf) {
  for (const Json& novel : (*golden_)["novels"]) CheckNovel(*gguf_tok_, novel, "gguf");
}

TEST_F(SmolLm2Tokenizer, NovelsFromExportedJson) {
  for (const Json& novel : (*golden_)["novels"]) CheckNovel(*json_tok_, novel, "json");
}

TEST_F(SmolLm2Tokenizer, NovelRoundTripAndStreaming) {
  const std::string text = ReadFileToString(test::TextPath("persuasion"));
  const auto ids = gguf_tok_->Encode(text);
  EXPECT_EQ(gguf_tok_->Decode(ids), text);
  StreamingDecoder dec(*gguf_tok_);
  std::string streamed;
  for (int32_t id : ids) streamed += dec.Feed(id);
  streamed += dec.Flush();
  EXPECT_EQ(streamed, text);
}

TEST_F(SmolLm2Tokenizer, ChatTemplateMatchesTransformers) {
  int n = 0;
  for (const Json& c : (*golden_)["chat"]) {
    if (c["family"] != "smollm2") continue;
    std::vector<ChatMessage> messages;
    for (const Json& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    EXPECT_EQ(c["template"].get<std::string>(), gguf_tok_->chat_template());
    for (const Tokenizer* tok : {gguf_tok_, json_tok_}) {
      EXPECT_EQ(tok->ApplyChatTemplate(messages, c["add_generation_prompt"]),
                c["rendered"].get<std::string>());
    }
    ++n;
  }
  EXPECT_EQ(n, 8);
  // The rendered prompt tokenizes with the specials as single tokens.
  const auto ids = gguf_tok_->Encode(gguf_tok_->ApplyChatTemplate({{"user", "Hi"}}, true));
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 2);
}

TEST_F(SmolLm2Tokenizer, ExportedFilesCarryTheConfig) {
  const Json config = Json::parse(ReadFileToString(*export_dir_ + "/tokenizer_config.json"));
  EXPECT_EQ(config["bos_token"], "<|im_start|>");
  EXPECT_EQ(config["eos_token"], "<|im_end|>");
  EXPECT_EQ(config["add_bos_token"], false);
  EXPECT_EQ(config["model_max_length"], 8192);
  EXPECT_EQ(config["chat_template"], gguf_tok_->chat_template());
  const Json tj = Json::parse(ReadFileToString(*export_dir_ + "/tokenizer.json"));
  EXPECT_EQ(tj["pre_tokenizer"]["pretokenizers"][0]["type"], "Digits");
  EXPECT_EQ(tj["model"]["merges"].size(), 48900u);
  EXPECT_EQ(tj["added_tokens"].size(), 17u);
  EXPECT_EQ(json_tok_->eos_ids(), gguf_tok_->eos_ids());
}

// Builds a small GGUF with tokenizer metadata to check the loader's errors.
std::string TinyGguf(const std::string& model, const std::string& pre) {
  GgufWriter w;
  w.AddMetadata("tokenizer.ggml.model", GgufString(model));
  w.AddMetadata("tokenizer.ggml.pre", GgufString(pre));
  w.AddMetadata("tokenizer.ggml.tokens", GgufStringArray({"a", "b", "ab", "<s>"}));
  w.AddMetadata("tokenizer.ggml.token_type", GgufI32Array({1, 1, 1, 3}));
  w.AddMetadata("tokenizer.ggml.merges", GgufStringArray({"a b"}));
  w.AddMetadata("tokenizer.ggml.bos_token_id", GgufU32(3));
  w.AddMetadata("tokenizer.ggml.add_bos_token", GgufBool(true));
  return w.Serialize();
}

TEST(TokenizerGguf, SmallFileAndErrors) {
  const std::string ok = TinyGguf("gpt2", "gpt-2");
  const GgufFile g =
      GgufFile::Parse(reinterpret_cast<const uint8_t*>(ok.data()), ok.size(), "t.gguf");
  const Tokenizer tok = Tokenizer::FromGguf(g);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.Encode("ab<s>ba"), (std::vector<int32_t>{3, 2, 3, 1, 0}));
  EXPECT_EQ(tok.Decode({3, 2}, true), "ab");

  auto expect_error = [](const std::string& image, const std::vector<std::string>& parts) {
    try {
      const GgufFile f =
          GgufFile::Parse(reinterpret_cast<const uint8_t*>(image.data()), image.size(), "t.gguf");
      Tokenizer::FromGguf(f);
      ADD_FAILURE() << "no error for " << parts.back();
    } catch (const Error& e) {
      for (const auto& p : parts)
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  expect_error(TinyGguf("llama", "default"), {"t.gguf", "tokenizer.ggml.model", "llama"});
  expect_error(TinyGguf("gpt2", "deepseek-coder"),
               {"t.gguf", "tokenizer.ggml.pre", "deepseek-coder"});
}

}  // namespace
}  // namespace awq
