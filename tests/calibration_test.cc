// Calibration data tests: paragraph splitting, JSONL and folder loading with their errors, the
// shuffle, and the token batch built from Emma with the real SmolLM2 tokenizer.
#include "awq/calibration.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/gguf.h"
#include "awq/tokenizer.h"
#include "test_util.h"

namespace awq {
namespace {

using Strings = std::vector<std::string>;

using test::ExpectError;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

const Tokenizer& SmolTokenizer() {
  static const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(test::ModelPath()));
  return tok;
}

TEST(SplitParagraphs, BlankLinesSeparateAndInnerNewlinesStay) {
  EXPECT_EQ(SplitParagraphs("one\ntwo\n\nthree\n"), (Strings{"one\ntwo", "three"}));
  // Runs of blank lines, whitespace-only lines, CRLF, a BOM, no final newline.
  EXPECT_EQ(SplitParagraphs("\xEF\xBB\xBF\n\n  a \r\n b\r\n \t \r\n\n\nc"),
            (Strings{"  a \n b", "c"}));
  EXPECT_EQ(SplitParagraphs(""), Strings{});
  EXPECT_EQ(SplitParagraphs("\n \n\t\n"), Strings{});
}

TEST(ParseCalibrationJsonl, TextFieldsAndBlankLines) {
  const std::string text =
      "{\"text\": \"first\", \"meta\": 1}\n"
      "\n"
      "  {\"id\": 7, \"text\": \"line\\nbreak \\u00e9\"}\r\n"
      "{\"text\": \"\"}";
  EXPECT_EQ(ParseCalibrationJsonl(text, "x.jsonl"), (Strings{"first", "line\nbreak \xC3\xA9", ""}));
}

TEST(ParseCalibrationJsonl, ErrorsNameFileLineAndProblem) {
  ExpectError([] { ParseCalibrationJsonl("{\"text\": \"a\"}\n\n{\"text\": \"b\"", "d.jsonl"); },
              {"d.jsonl:3:", "not valid JSON"});
  ExpectError([] { ParseCalibrationJsonl("[1, 2]", "d.jsonl"); },
              {"d.jsonl:1:", "expected a JSON object", "array"});
  ExpectError([] { ParseCalibrationJsonl("{\"t\": 1}", "d.jsonl"); },
              {"d.jsonl:1:", "no \"text\" field"});
  ExpectError([] { ParseCalibrationJsonl("{\"text\": \"a\"}\n{\"text\": 5}", "d.jsonl"); },
              {"d.jsonl:2:", "\"text\" is a number"});
  // Invalid UTF-8 inside a JSON string is a parse error, not a silently mangled sample.
  ExpectError([] { ParseCalibrationJsonl("{\"text\": \"\xff\"}", "d.jsonl"); },
              {"d.jsonl:1:", "not valid JSON"});
}

TEST(LoadCalibrationTexts, FilesAndFolders) {
  const std::string dir = test::MakeTempDir("calib");
  WriteFile(dir + "/b.txt", "para one\nstill one\n\npara two\n");
  WriteFile(dir + "/a.jsonl", "{\"text\": \"json sample\"}\n");
  WriteFile(dir + "/c.md", "ignored: not .txt or .jsonl\n");
  std::filesystem::create_directory(dir + "/sub.txt");  // a folder, not a file: ignored
  EXPECT_EQ(LoadCalibrationTexts(dir + "/b.txt"), (Strings{"para one\nstill one", "para two"}));
  // Folder: a.jsonl before b.txt (sorted by name).
  EXPECT_EQ(LoadCalibrationTexts(dir), (Strings{"json sample", "para one\nstill one", "para two"}));
  // Any other extension is read as plain text.
  EXPECT_EQ(LoadCalibrationTexts(dir + "/c.md"), (Strings{"ignored: not .txt or .jsonl"}));
}

TEST(LoadCalibrationTexts, Errors) {
  const std::string dir = test::MakeTempDir("calib_err");
  ExpectError([&] { LoadCalibrationTexts(dir); }, {dir, "no .txt or .jsonl files"});
  WriteFile(dir + "/empty.txt", "\n\n   \n");
  ExpectError([&] { LoadCalibrationTexts(dir); }, {dir, "no samples"});
  ExpectError([&] { LoadCalibrationTexts(dir + "/empty.txt"); },
              {dir + "/empty.txt", "no samples"});
  ExpectError([&] { LoadCalibrationTexts(dir + "/missing.txt"); }, {dir + "/missing.txt"});
  WriteFile(dir + "/bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": [1]}\n");
  ExpectError([&] { LoadCalibrationTexts(dir); }, {dir + "/bad.jsonl:2:", "\"text\" is a array"});
}

TEST(ShuffleOrder, PermutationDeterministicAndSeeded) {
  const std::vector<int64_t> a = ShuffleOrder(1000, 42);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(a, ShuffleOrder(1000, 42));
  EXPECT_NE(a, ShuffleOrder(1000, 43));
  EXPECT_TRUE(ShuffleOrder(0, 42).empty());
  EXPECT_EQ(ShuffleOrder(1, 42), std::vector<int64_t>{0});
  // Pinned: the order must not change between releases or platforms (std::mt19937_64 and our own
  // rejection sampling are both fully specified), or calibration results would drift.
  EXPECT_EQ(ShuffleOrder(8, 42), (std::vector<int64_t>{7, 0, 5, 1, 2, 4, 3, 6}));
}

TEST(BuildCalibrationBatch, EmmaWithSmolLm2Tokenizer) {
  const Tokenizer& tok = SmolTokenizer();
  const Strings texts = LoadCalibrationTexts(test::TextPath("emma"));
  ASSERT_GT(texts.size(), 2000u);
  const CalibrationOptions opts;  // 128 samples, 512 tokens, seed 42
  const CalibrationBatch b = BuildCalibrationBatch(texts, tok, opts);
  EXPECT_EQ(b.seq_len, 512);
  EXPECT_EQ(b.n_samples_used, 128);
  ASSERT_GE(b.n_blocks, 1);
  EXPECT_EQ(static_cast<int64_t>(b.tokens.size()), b.n_blocks * 512);
  EXPECT_LT(b.n_tokens_dropped, 512);
  for (int32_t id : b.tokens) ASSERT_TRUE(id >= 0 && id < tok.vocab_size());

  // The blocks are exactly the accepted samples, tokenized and concatenated in shuffled order.
  const std::vector<int64_t> order = ShuffleOrder(static_cast<int64_t>(texts.size()), 42);
  std::vector<int32_t> stream;
  int64_t used = 0, skipped = 0;
  for (int64_t idx : order) {
    if (used == 128) break;
    std::string t = texts[idx];
    t.erase(0, t.find_first_not_of(" \t\n\r\f\v"));
    t.erase(t.find_last_not_of(" \t\n\r\f\v") + 1);
    const std::vector<int32_t> ids = tok.Encode(t, true, false);
    if (t.empty() || ids.size() > 512) {
      ++skipped;
      continue;
    }
    stream.insert(stream.end(), ids.begin(), ids.end());
    ++used;
  }
  EXPECT_EQ(b.n_samples_skipped, skipped);
  EXPECT_EQ(b.n_blocks, static_cast<int64_t>(stream.size()) / 512);
  EXPECT_EQ(b.n_tokens_dropped, static_cast<int64_t>(stream.size()) % 512);
  stream.resize(b.tokens.size());
  EXPECT_EQ(b.tokens, stream);
  std::printf(
      "Emma: %zu paragraphs -> %lld blocks of 512 (%lld samples, %lld skipped, %lld "
      "tokens dropped)\n",
      texts.size(), static_cast<long long>(b.n_blocks), static_cast<long long>(b.n_samples_used),
      static_cast<long long>(b.n_samples_skipped), static_cast<long long>(b.n_tokens_dropped));

  // Deterministic; another seed draws other paragraphs.
  EXPECT_EQ(BuildCalibrationBatch(texts, tok, opts).tokens, b.tokens);
  CalibrationOptions other = opts;
  other.seed = 7;
  const CalibrationBatch c = BuildCalibrationBatch(texts, tok, other);
  EXPECT_NE(c.tokens, b.tokens);
  // Unshuffled: the book's first paragraphs, starting with the title "EMMA".
  CalibrationOptions in_order = opts;
  in_order.shuffle = false;
  const CalibrationBatch d = BuildCalibrationBatch(texts, tok, in_order);
  const std::vector<int32_t> head = tok.Encode("EMMA", true, false);
  ASSERT_GE(d.tokens.size(), head.size());
  EXPECT_TRUE(std::equal(head.begin(), head.end(), d.tokens.begin()));
}

TEST(BuildCalibrationBatch, SkipsEmptyAndLongSamplesAndCuts) {
  const Tokenizer& tok = SmolTokenizer();
  const std::string word = " word";
  std::string long_text;
  for (int i = 0; i < 40; ++i) long_text += word;  // 40 tokens
  const Strings texts = {"  \n\t ", long_text, "a b c", "d e f g", "", "h"};
  CalibrationOptions o;
  o.seq_len = 4;
  o.shuffle = false;
  const CalibrationBatch b = BuildCalibrationBatch(texts, tok, o);
  // "a b c" (3) + "d e f g" (4) + "h" (1) = 8 tokens -> 2 blocks, nothing dropped.
  EXPECT_EQ(b.n_samples_used, 3);
  EXPECT_EQ(b.n_samples_skipped, 3);
  EXPECT_EQ(b.n_blocks, 2);
  EXPECT_EQ(b.n_tokens_dropped, 0);
  std::vector<int32_t> want = tok.Encode("a b c", true, false);
  for (const char* t : {"d e f g", "h"}) {
    const std::vector<int32_t> ids = tok.Encode(t, true, false);
    want.insert(want.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(b.tokens, want);
  // max_samples stops early: 3 + 4 = 7 tokens -> one block of 4, 3 dropped.
  o.max_samples = 2;
  const CalibrationBatch c = BuildCalibrationBatch(texts, tok, o);
  EXPECT_EQ(c.n_samples_used, 2);
  EXPECT_EQ(c.n_blocks, 1);
  EXPECT_EQ(c.n_tokens_dropped, 3);
}

TEST(BuildCalibrationBatch, Errors) {
  const Tokenizer& tok = SmolTokenizer();
  ExpectError(
      [&] {
        BuildCalibrationBatch({"a few words", ""}, tok, CalibrationOptions{});
      },
      {"only 3 tokens", "1 usable samples", "1 skipped", "512"});
  CalibrationOptions o;
  o.max_samples = 0;
  ExpectError([&] { BuildCalibrationBatch({"x"}, tok, o); }, {"max_samples", "0"});
  o = CalibrationOptions{};
  o.seq_len = -5;
  ExpectError([&] { BuildCalibrationBatch({"x"}, tok, o); }, {"seq_len", "-5"});
}

}  // namespace
}  // namespace awq
