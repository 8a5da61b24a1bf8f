// Test helpers: asset paths and temporary folders.
#include "test_util.h"

#include "awq/sampling.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "awq/error.h"
#include "awq/model.h"
#include "core/mapped_file.h"

namespace awq::test {

std::string AssetsDir() {
  if (const char* env = std::getenv("AWQ_ASSETS_DIR")) return env;
  return std::string(AWQ_SOURCE_DIR) + "/assets";
}

bool FileExists(const std::string& path) { return std::filesystem::exists(path); }

void RequireFile(const std::string& path) {
  if (!FileExists(path)) {
    FAIL() << "missing asset " << path << ": run scripts/setup.sh first (see README.md)";
  }
}

std::string ModelPath() {
  const std::string p = AssetsDir() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  RequireFile(p);
  return p;
}

std::string TextPath(const std::string& name) {
  const std::string p = AssetsDir() + "/text/" + name + ".txt";
  RequireFile(p);
  return p;
}

std::string DataPath(const std::string& name) {
  return std::string(AWQ_TEST_DATA_DIR) + "/" + name;
}

namespace {
std::mutex g_mu;
std::vector<std::string>* g_dirs = nullptr;
void RemoveDirs() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_dirs) return;
  for (const auto& d : *g_dirs) {
    std::error_code ec;
    std::filesystem::remove_all(d, ec);
  }
}
}  // namespace

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  char* made = ::mkdtemp(tmpl.data());
  if (made == nullptr) ADD_FAILURE() << "mkdtemp failed for " << tmpl;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_dirs) {
    g_dirs = new std::vector<std::string>();
    std::atexit(RemoveDirs);
  }
  g_dirs->push_back(tmpl);
  return tmpl;
}

void ExpectError(const std::function<void()>& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) {
      EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
    }
    return;
  }
  ADD_FAILURE() << "no awq::Error thrown";
}

std::vector<float> RandomNormal(size_t n, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

uint64_t Fnv1a64(const std::vector<int32_t>& ids) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int32_t id : ids) {
    const auto u = static_cast<uint32_t>(id);
    for (int b = 0; b < 4; ++b) {
      h ^= (u >> (8 * b)) & 0xFF;
      h *= 0x100000001b3ull;
    }
  }
  return h;
}

std::string Hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

void ExpectTokenStream(const std::vector<int32_t>& ids, size_t count,
                       const std::vector<int32_t>& first, const std::vector<int32_t>& last,
                       const std::string& fnv1a64_hex, const std::string& name) {
  ASSERT_EQ(ids.size(), count) << name;
  ASSERT_GE(ids.size(), std::max(first.size(), last.size())) << name;
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + static_cast<long>(first.size())), first)
      << name;
  EXPECT_EQ(std::vector<int32_t>(ids.end() - static_cast<long>(last.size()), ids.end()), last)
      << name;
  EXPECT_EQ(Hex64(Fnv1a64(ids)), fnv1a64_hex) << name;
}

std::map<std::string, std::string> ReadTree(const std::string& dir) {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) {
      files[fs::relative(e.path(), dir).string()] = ReadFileToString(e.path().string());
    }
  }
  return files;
}

void ExpectSameTree(const std::string& a, const std::string& b) {
  const auto ta = ReadTree(a), tb = ReadTree(b);
  ASSERT_FALSE(ta.empty()) << a;
  ASSERT_EQ(ta.size(), tb.size()) << a << " vs " << b;
  for (const auto& [name, bytes] : ta) {
    ASSERT_TRUE(tb.count(name)) << name << " missing from " << b;
    EXPECT_TRUE(bytes == tb.at(name)) << name << " differs between " << a << " and " << b;
  }
}

std::vector<float> PromptLogits(const Model& m, const std::vector<int32_t>& ids) {
  const int64_t n = static_cast<int64_t>(ids.size()), d = m.config().hidden_size;
  KvCache cache = m.NewCache(n);
  std::vector<float> hidden(static_cast<size_t>(n * d));
  m.Forward(ids.data(), n, cache, hidden.data());
  std::vector<float> logits(static_cast<size_t>(n * m.config().vocab_size));
  m.Logits(hidden.data(), n, logits.data());
  return logits;
}

std::string TinyDir(const std::string& name) { return DataPath("tiny/" + name); }

namespace {
nlohmann::json ReadGoldenJson(const std::string& name) {
  const std::string path = TinyDir(name) + "/golden.json";
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  return nlohmann::json::parse(f);
}
}  // namespace

std::vector<GoldenPrompt> ReadGoldenPrompts(const std::string& name) {
  const nlohmann::json golden = ReadGoldenJson(name);  // alive through the loop below
  std::vector<GoldenPrompt> out;
  for (const auto& p : golden.at("prompts")) {
    out.push_back({p.at("ids").get<std::vector<int32_t>>(),
                   p.at("logits").get<std::vector<std::vector<float>>>()});
  }
  return out;
}

float ExpectPromptLogitsMatchGolden(const Model& m, const std::string& name, float tol) {
  const int64_t v = m.config().vocab_size;
  float worst = 0;
  const std::vector<GoldenPrompt> prompts = ReadGoldenPrompts(name);
  EXPECT_FALSE(prompts.empty()) << name << ": no golden prompts";
  for (const GoldenPrompt& p : prompts) {
    const std::vector<float> logits = PromptLogits(m, p.ids);
    for (size_t t = 0; t < p.ids.size(); ++t) {
      EXPECT_EQ(static_cast<int64_t>(p.logits[t].size()), v);
      if (static_cast<int64_t>(p.logits[t].size()) != v) return worst;
      for (int64_t j = 0; j < v; ++j) {
        const float diff = std::fabs(logits[t * v + j] - p.logits[t][static_cast<size_t>(j)]);
        worst = std::max(worst, diff);
        if (diff > tol) {
          ADD_FAILURE() << name << " position " << t << " logit " << j << ": |diff| " << diff
                        << " > " << tol;
          return worst;
        }
      }
    }
  }
  std::printf("%s: largest |logit - transformers| = %.3g\n", name.c_str(), worst);
  return worst;
}

float ExpectChunkedDecodeMatchesGolden(const Model& m, const GoldenPrompt& p, KvCache& cache,
                                       float tol, const std::string& name) {
  const int64_t v = m.config().vocab_size, d = m.config().hidden_size;
  const int64_t n = static_cast<int64_t>(p.ids.size());
  std::vector<float> hidden(static_cast<size_t>(n * d)), logits(static_cast<size_t>(n * v));
  float worst = 0;
  for (int64_t t = 0; t < n;) {
    const int64_t step = std::min<int64_t>(n - t, t == 0 ? 5 : (t == 20 ? 3 : 1));
    m.Forward(p.ids.data() + t, step, cache, hidden.data());
    m.Logits(hidden.data(), step, logits.data());
    for (int64_t i = 0; i < step; ++i) {
      for (int64_t j = 0; j < v; ++j) {
        const float diff = std::fabs(logits[i * v + j] -
                                     p.logits[static_cast<size_t>(t + i)][static_cast<size_t>(j)]);
        worst = std::max(worst, diff);
        if (diff > tol) {
          ADD_FAILURE() << name << " position " << t + i << " logit " << j << ": |diff| " << diff
                        << " > " << tol;
          return worst;
        }
      }
    }
    t += step;
  }
  std::printf("%s: largest decode |logit - transformers| = %.3g\n", name.c_str(), worst);
  return worst;
}

void ExpectGreedyMatchesGolden(const Model& m, const std::string& name) {
  const nlohmann::json g = ReadGoldenJson(name).at("greedy");
  const std::vector<int32_t> prompt = g.at("prompt").get<std::vector<int32_t>>();
  const std::vector<int32_t> want = g.at("new_tokens").get<std::vector<int32_t>>();
  EXPECT_EQ(GreedyTokens(m, prompt, want.size()), want)
      << name << " (smallest top-2 margin in transformers: " << g.at("min_top2_margin") << ")";
}

std::string EditedTinyCopy(const std::string& name, const std::string& key,
                           const nlohmann::json& value) {
  const std::string dir = MakeTempDir("tiny_" + name);
  for (const auto& f : std::filesystem::directory_iterator(TinyDir(name))) {
    std::filesystem::copy_file(f.path(), dir + "/" + f.path().filename().string(),
                               std::filesystem::copy_options::overwrite_existing);
  }
  std::ifstream in(dir + "/config.json");
  nlohmann::json j = nlohmann::json::parse(in);
  in.close();
  if (value.is_null()) {
    j.erase(key);
  } else {
    j[key] = value;
  }
  std::ofstream(dir + "/config.json") << j.dump(2);
  return dir;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  }
  return worst;
}

std::string WriteTinyCalibration(const std::string& dir, uint64_t seed) {
  const std::string path = dir + "/calib.txt";
  std::ofstream f(path);
  const char* words[] = {"the",    "house", "was",    "quiet",   "and", "she",
                         "walked", "into",  "garden", "with",    "her", "sister",
                         "who",    "had",   "been",   "reading", "a",   "letter"};
  uint64_t s = seed;
  for (int line = 0; line < 200; ++line) {
    for (int w = 0; w < 6; ++w) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      f << words[(s >> 33) % std::size(words)] << (w == 5 ? ".\n\n" : " ");
    }
  }
  return path;
}

std::vector<int32_t> GreedyTokens(const Model& m, const std::vector<int32_t>& prompt, size_t n) {
  const int64_t v = m.config().vocab_size, d = m.config().hidden_size;
  KvCache cache = m.NewCache(static_cast<int64_t>(prompt.size() + n));
  std::vector<float> hidden(prompt.size() * static_cast<size_t>(d)), logits(static_cast<size_t>(v));
  m.Forward(prompt.data(), static_cast<int64_t>(prompt.size()), cache, hidden.data());
  m.Logits(hidden.data() + (prompt.size() - 1) * static_cast<size_t>(d), 1, logits.data());
  Sampler sampler(SamplingParams{});
  std::vector<int32_t> got;
  while (got.size() < n) {
    const int32_t next = sampler.Sample(logits.data(), v);
    got.push_back(next);
    m.Forward(&next, 1, cache, hidden.data());
    m.Logits(hidden.data(), 1, logits.data());
  }
  return got;
}

}  // namespace awq::test
