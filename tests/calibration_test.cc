// Calibration data tests: paragraph splitting, JSONL and folder loading with their errors, the
// shuffle, the token batch built from Emma with the real SmolLM2 tokenizer, and pre-tokenized
// ("input_ids") JSONL files.
#include "awq/calibration.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
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

using IdLists = std::vector<std::vector<int32_t>>;
using Ids = std::vector<int32_t>;

// One {"input_ids": [...]} line per sample.
std::string IdsJsonl(const IdLists& samples) {
  std::string out;
  for (const Ids& ids : samples) {
    out += "{\"input_ids\": [";
    for (size_t k = 0; k < ids.size(); ++k) out += (k ? ", " : "") + std::to_string(ids[k]);
    out += "]}\n";
  }
  return out;
}

TEST(ParseCalibrationIdsJsonl, IdsBlankLinesAndOtherFields) {
  const std::string text =
      "\xEF\xBB\xBF{\"input_ids\": [1, 2, 3], \"attention_mask\": [1, 1, 1]}\n"
      "\n"
      "  {\"id\": 7, \"input_ids\": [0, 2147483647]}\r\n"
      "{\"input_ids\": [-0, 5]}";
  EXPECT_EQ(ParseCalibrationIdsJsonl(text, "x.jsonl"),
            (IdLists{{1, 2, 3}, {0, 2147483647}, {0, 5}}));
  EXPECT_EQ(ParseCalibrationIdsJsonl("\n \n", "x.jsonl"), IdLists{});
}

TEST(ParseCalibrationIdsJsonl, ErrorsNameFileLineAndProblem) {
  const auto parse = [](const std::string& text) { ParseCalibrationIdsJsonl(text, "ids.jsonl"); };
  const std::string ok = "{\"input_ids\": [1]}\n\n";  // the bad line is line 3
  ExpectError([&] { parse(ok + "{\"input_ids\": [1, 2.5]}"); },
              {"ids.jsonl:3:", "input_ids[1]", "2.5", "not an integer"});
  ExpectError([&] { parse(ok + "{\"input_ids\": [1.0]}"); },
              {"ids.jsonl:3:", "input_ids[0]", "not an integer"});
  ExpectError([&] { parse(ok + "{\"input_ids\": [4, -3]}"); },
              {"ids.jsonl:3:", "input_ids[1]", "-3", "negative"});
  ExpectError([&] { parse(ok + "{\"input_ids\": [2147483648]}"); },
              {"ids.jsonl:3:", "input_ids[0]", "2147483648", "2147483647"});
  // Beyond 64 bits nlohmann holds a float; still named, still refused.
  ExpectError([&] { parse(ok + "{\"input_ids\": [100000000000000000000]}"); },
              {"ids.jsonl:3:", "input_ids[0]", "not an integer"});
  ExpectError([&] { parse(ok + "{\"input_ids\": [1, \"2\"]}"); },
              {"ids.jsonl:3:", "input_ids[1]", "string"});
  ExpectError([&] { parse(ok + "{\"input_ids\": [[1, 2]]}"); },
              {"ids.jsonl:3:", "input_ids[0]", "array"});
  ExpectError([&] { parse(ok + "{\"input_ids\": []}"); }, {"ids.jsonl:3:", "empty"});
  ExpectError([&] { parse(ok + "{\"input_ids\": 5}"); },
              {"ids.jsonl:3:", "\"input_ids\" is a number"});
  ExpectError([&] { parse(ok + "{\"text\": \"hello\"}"); },
              {"ids.jsonl:3:", "\"text\"", "not both"});
  ExpectError([&] { parse(ok + "{\"text\": \"a\", \"input_ids\": [1]}"); },
              {"ids.jsonl:3:", "both", "not both"});
  ExpectError([&] { parse(ok + "{\"ids\": [1]}"); }, {"ids.jsonl:3:", "no \"input_ids\""});
  ExpectError([&] { parse(ok + "[1, 2]"); }, {"ids.jsonl:3:", "expected a JSON object", "array"});
  ExpectError([&] { parse(ok + "{\"input_ids\": [1"); }, {"ids.jsonl:3:", "not valid JSON"});
}

TEST(ParseCalibrationJsonl, InputIdsLinesAreRefused) {
  // Text mode never silently ignores token ids: a mixed file or an ids file read as text.
  ExpectError([] { ParseCalibrationJsonl("{\"text\": \"a\"}\n{\"input_ids\": [1]}", "d.jsonl"); },
              {"d.jsonl:2:", "\"input_ids\"", "after lines with \"text\""});
  ExpectError([] { ParseCalibrationJsonl("{\"input_ids\": [1]}", "d.jsonl"); },
              {"d.jsonl:1:", "\"input_ids\"", "where text samples were expected"});
}

TEST(BuildCalibrationBatchFromIds, FileOrderSkipsLongAndCuts) {
  const IdLists samples = {{1, 2, 3}, {4, 5, 6, 7, 8}, {9, 10, 11, 12}, {13}, {14, 15, 16}};
  CalibrationOptions o;
  o.seq_len = 4;
  // shuffle (the default) and seed play no part for pre-tokenized samples.
  const CalibrationBatch b = BuildCalibrationBatchFromIds(samples, o);
  // {4..8} is longer than 4 and skipped; {9..12} (exactly seq_len) is kept. 3 + 4 + 1 + 3 = 11
  // tokens -> 2 blocks, 3 dropped.
  EXPECT_EQ(b.seq_len, 4);
  EXPECT_EQ(b.n_blocks, 2);
  EXPECT_EQ(b.n_samples_used, 4);
  EXPECT_EQ(b.n_samples_skipped, 1);
  EXPECT_EQ(b.n_tokens_dropped, 3);
  EXPECT_EQ(b.tokens, (Ids{1, 2, 3, 9, 10, 11, 12, 13}));
  EXPECT_EQ(b.max_token_id, 13);
}

TEST(BuildCalibrationBatchFromIds, MaxSamplesStopsAndSkipsCountOnlyUpToIt) {
  const IdLists samples = {{7, 7}, {1, 2, 3, 4, 5, 6, 7}, {8, 9}, {3}, {1, 2, 3, 4, 5, 6, 7}};
  CalibrationOptions o;
  o.seq_len = 3;
  o.max_samples = 2;
  const CalibrationBatch b = BuildCalibrationBatchFromIds(samples, o);
  // {7, 7} and {8, 9} accepted, then stop: the last long sample is never visited.
  EXPECT_EQ(b.n_samples_used, 2);
  EXPECT_EQ(b.n_samples_skipped, 1);
  EXPECT_EQ(b.n_blocks, 1);
  EXPECT_EQ(b.n_tokens_dropped, 1);
  EXPECT_EQ(b.tokens, (Ids{7, 7, 8}));
  EXPECT_EQ(b.max_token_id, 8);
}

TEST(BuildCalibrationBatchFromIds, Errors) {
  CalibrationOptions o;
  o.seq_len = 8;
  ExpectError(
      [&] {
        BuildCalibrationBatchFromIds({{1, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}}, o);
      },
      {"calibration:", "only 3 tokens", "1 usable samples", "1 skipped", "seq_len 8"});
  ExpectError(
      [&] {
        BuildCalibrationBatchFromIds({{1, 2}, {3, -4}}, o);
      },
      {"sample 1", "-4", "position 1"});
  o.max_samples = 0;
  ExpectError([&] { BuildCalibrationBatchFromIds({{1}}, o); }, {"max_samples", "0"});
}

TEST(LoadCalibrationBatch, IdsFileGivesExactBlocks) {
  const std::string dir = test::MakeTempDir("calib_ids");
  // 6 samples of 5..10 ids; seq_len 8, no shuffle whatever the options say.
  IdLists samples;
  Ids stream;
  int32_t next = 100;
  for (int len = 5; len <= 10; ++len) {
    Ids ids;
    for (int k = 0; k < len; ++k) ids.push_back(next++);
    samples.push_back(ids);
    if (len <= 8) stream.insert(stream.end(), ids.begin(), ids.end());
  }
  WriteFile(dir + "/ids.jsonl", "\n" + IdsJsonl(samples) + "\n");
  CalibrationOptions o;
  o.seq_len = 8;
  o.seed = 3;
  const CalibrationBatch b = LoadCalibrationBatch(dir + "/ids.jsonl", SmolTokenizer(), o);
  // 5 + 6 + 7 + 8 = 26 tokens -> 3 blocks, 2 dropped; the 9- and 10-id samples are skipped.
  EXPECT_EQ(b.n_samples_used, 4);
  EXPECT_EQ(b.n_samples_skipped, 2);
  EXPECT_EQ(b.n_blocks, 3);
  EXPECT_EQ(b.n_tokens_dropped, 2);
  stream.resize(24);
  EXPECT_EQ(b.tokens, stream);
  EXPECT_EQ(b.max_token_id, stream.back());

  // Ids beyond the tokenizer's vocabulary are the caller's to check: they pass here.
  WriteFile(dir + "/big.jsonl", IdsJsonl({{1, 2000000000, 3, 4}}));
  o.seq_len = 4;
  EXPECT_EQ(LoadCalibrationBatch(dir + "/big.jsonl", SmolTokenizer(), o).max_token_id, 2000000000);
}

TEST(LoadCalibrationBatch, TextIsBuildCalibrationBatchOfLoadCalibrationTexts) {
  const Tokenizer& tok = SmolTokenizer();
  const std::string dir = test::MakeTempDir("calib_dispatch");
  std::string text;
  for (int i = 0; i < 40; ++i) text += "Paragraph number " + std::to_string(i) + " is here.\n\n";
  WriteFile(dir + "/t.txt", text);
  WriteFile(dir + "/t.jsonl",
            "{\"text\": \"one two three four five six\"}\n"
            "{\"text\": \"seven eight nine ten eleven twelve thirteen fourteen fifteen\"}\n"
            "{\"text\": \"sixteen seventeen eighteen nineteen twenty\"}\n");
  CalibrationOptions o;
  o.seq_len = 8;
  for (const std::string& path : {dir + "/t.txt", dir + "/t.jsonl", dir}) {
    SCOPED_TRACE(path);
    const CalibrationBatch a = LoadCalibrationBatch(path, tok, o);
    const CalibrationBatch b = BuildCalibrationBatch(LoadCalibrationTexts(path), tok, o);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_EQ(a.n_blocks, b.n_blocks);
    EXPECT_EQ(a.n_samples_used, b.n_samples_used);
    EXPECT_EQ(a.n_samples_skipped, b.n_samples_skipped);
    EXPECT_EQ(a.n_tokens_dropped, b.n_tokens_dropped);
    EXPECT_EQ(a.max_token_id, *std::max_element(b.tokens.begin(), b.tokens.end()));
  }
}

TEST(LoadCalibrationBatch, ErrorsNameTheFile) {
  const Tokenizer& tok = SmolTokenizer();
  const std::string dir = test::MakeTempDir("calib_ids_err");
  CalibrationOptions o;
  o.seq_len = 4;
  // Mixed files, whichever kind comes first.
  WriteFile(dir + "/mix1.jsonl", "{\"input_ids\": [1, 2]}\n\n{\"text\": \"a b\"}\n");
  ExpectError([&] { LoadCalibrationBatch(dir + "/mix1.jsonl", tok, o); },
              {dir + "/mix1.jsonl:3:", "not both"});
  WriteFile(dir + "/mix2.jsonl", "{\"text\": \"a b\"}\n{\"input_ids\": [1, 2]}\n");
  ExpectError([&] { LoadCalibrationBatch(dir + "/mix2.jsonl", tok, o); },
              {dir + "/mix2.jsonl:2:", "\"input_ids\""});
  WriteFile(dir + "/neg.jsonl", "{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, -2]}\n");
  ExpectError([&] { LoadCalibrationBatch(dir + "/neg.jsonl", tok, o); },
              {dir + "/neg.jsonl:2:", "input_ids[1]", "negative"});
  WriteFile(dir + "/empty.jsonl", "{\"input_ids\": [1, 2]}\n{\"input_ids\": []}\n");
  ExpectError([&] { LoadCalibrationBatch(dir + "/empty.jsonl", tok, o); },
              {dir + "/empty.jsonl:2:", "empty"});
  // Too few tokens: the message names the file.
  WriteFile(dir + "/short.jsonl", IdsJsonl({{1, 2}, {1, 2, 3, 4, 5}}));
  ExpectError([&] { LoadCalibrationBatch(dir + "/short.jsonl", tok, o); },
              {dir + "/short.jsonl", "only 2 tokens", "1 skipped"});
  // Pre-tokenized files are not read from a folder.
  const std::string sub = test::MakeTempDir("calib_ids_dir");
  WriteFile(sub + "/ids.jsonl", IdsJsonl({{1, 2, 3, 4}}));
  ExpectError([&] { LoadCalibrationBatch(sub, tok, o); }, {sub + "/ids.jsonl:1:", "input_ids"});
}

}  // namespace
}  // namespace awq
