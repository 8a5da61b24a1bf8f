// Helpers shared by the tests: where the assets fetched by scripts/setup.sh live, temp folders.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace awq {
class KvCache;
class Model;
}  // namespace awq

namespace awq::test {

// <repo>/assets, or $AWQ_ASSETS_DIR when set.
std::string AssetsDir();
// The default model: assets/models/SmolLM2-135M-Instruct.Q4_1.gguf. Fails the calling test
// (with a pointer to scripts/setup.sh) when the file is missing.
std::string ModelPath();
// One novel as UTF-8 text: assets/text/<name>.txt, name in {emma, mansfieldpark,
// northangerabbey, persuasion, prideprejudice, sensesensibility}.
std::string TextPath(const std::string& name);
// Committed fixtures: tests/data/<name>.
std::string DataPath(const std::string& name);
// A fresh empty folder under the system temp dir, removed at process exit.
std::string MakeTempDir(const std::string& prefix);
// True when the file exists; tests that need assets call RequireFile() which fails loudly.
bool FileExists(const std::string& path);
void RequireFile(const std::string& path);

// Expects fn() to throw awq::Error whose message contains every one of `parts` (the file, the
// field and the value, for user errors).
void ExpectError(const std::function<void()>& fn, std::initializer_list<std::string> parts);

// FNV-1a 64 over the little-endian bytes of each id, as the reference scripts in tools/ hash token
// streams; and its 16-digit lower-case hex form.
uint64_t Fnv1a64(const std::vector<int32_t>& ids);
std::string Hex64(uint64_t v);
// Checks a whole novel's ids against its golden summary: count, first and last ids
// ("first"/"last" arrays) and the FNV-1a hash (`fnv1a64` hex), given as JSON text fields.
void ExpectTokenStream(const std::vector<int32_t>& ids, size_t count,
                       const std::vector<int32_t>& first, const std::vector<int32_t>& last,
                       const std::string& fnv1a64_hex, const std::string& name);

// Every regular file under `dir` by relative path, with its bytes.
std::map<std::string, std::string> ReadTree(const std::string& dir);
// Expects the folders `a` and `b` to hold the same files with the same bytes (`a` not empty).
void ExpectSameTree(const std::string& a, const std::string& b);

// The generate loop's greedy continuation of `prompt`: the prompt through the cache, then n
// tokens one at a time, each the greedy Sampler's choice.
std::vector<int32_t> GreedyTokens(const Model& m, const std::vector<int32_t>& prompt, size_t n);

// DIR/calib.txt: 200 short lines of common words (each under the 32-token sample limit of the
// tiny models' tokenizer), drawn by a seeded generator; returns the path.
std::string WriteTinyCalibration(const std::string& dir, uint64_t seed = 7);

// The fp32 logits [n, V] of `ids` at positions 0..n-1, in one prompt pass from an empty cache.
std::vector<float> PromptLogits(const Model& m, const std::vector<int32_t>& ids);

// ---- Tiny random-weight models with transformers' golden outputs (tests/data/tiny/<name>,
// written by tools/make_tiny_models.py; the golden.json format is in docs/GOLDEN.md).

std::string TinyDir(const std::string& name);
// One golden prompt: its ids and transformers' fp32 logits [T][V].
struct GoldenPrompt {
  std::vector<int32_t> ids;
  std::vector<std::vector<float>> logits;
};
std::vector<GoldenPrompt> ReadGoldenPrompts(const std::string& name);
// Expects the logits of one prompt pass over each golden prompt within `tol` of transformers'
// (failing at the first position beyond it) and prints and returns the largest difference.
float ExpectPromptLogitsMatchGolden(const Model& m, const std::string& name, float tol);
// Runs `p` through `cache` as a prompt of 5 tokens, then one token at a time, with a second
// prompt of 3 at position 20, expecting every position's logits within `tol` of the golden ones;
// prints and returns the largest difference.
float ExpectChunkedDecodeMatchesGolden(const Model& m, const GoldenPrompt& p, KvCache& cache,
                                       float tol, const std::string& name);
// Expects the generate loop's greedy continuation of the golden "greedy" prompt to be
// transformers' tokens.
void ExpectGreedyMatchesGolden(const Model& m, const std::string& name);
// A copy of tests/data/tiny/<name> in a fresh temp folder whose config.json has `key` set to
// `value` (removed when `value` is null); returns the folder.
std::string EditedTinyCopy(const std::string& name, const std::string& key,
                           const nlohmann::json& value);
// The largest |a[i] - b[i]| (the sizes expected equal).
float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b);

// n draws of N(0, scale^2) from mt19937_64 seeded with `seed`.
std::vector<float> RandomNormal(size_t n, uint64_t seed, float scale = 1.0f);

}  // namespace awq::test
