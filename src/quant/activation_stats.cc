// Activation statistics of every decoder linear's input (collected with the model's module-level
// forwards), their salience summary, and the activation_stats.safetensors file.
#include "awq/activation_stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <tuple>

#include "awq/calibration.h"
#include "awq/error.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/safetensors.h"
#include "awq/thread_pool.h"

#include "model/arch.h"

namespace awq {

namespace {

// Tokens pushed through all blocks at once: bounds the activations alive (4096 x 1536 floats of
// MLP activation = 24 MiB for SmolLM2) while keeping the GEMMs large enough to be efficient.
constexpr int64_t kChunkTokens = 4096;

constexpr const char* kMeanSuffix = ".input_mean_abs";
constexpr const char* kMaxSuffix = ".input_max_abs";

// Running sums of |x| (double) and maxima of |x| over the rows of inputs [n, d].
struct Accumulator {
  std::vector<double> sum;
  std::vector<float> max;
  explicit Accumulator(int64_t d) : sum(static_cast<size_t>(d), 0.0), max(sum.size(), 0.0f) {}
  void Add(const float* x, int64_t n) {
    const int64_t d = static_cast<int64_t>(sum.size());
    // Columns are split over threads; each thread walks every row of its column range, so the
    // sums are added in row order whatever the thread count.
    ThreadPool::Global().ParallelFor(
        d,
        [&](int64_t c0, int64_t c1, int) {
          for (int64_t t = 0; t < n; ++t) {
            const float* row = x + t * d;
            for (int64_t c = c0; c < c1; ++c) {
              const float a = std::fabs(row[c]);
              sum[static_cast<size_t>(c)] += a;
              if (a > max[static_cast<size_t>(c)]) max[static_cast<size_t>(c)] = a;
            }
          }
        },
        16);
  }
};

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Sort key: (layer, position in LinearNames) for decoder linears, then any other name.
std::tuple<int64_t, int64_t, std::string> ModuleKey(const std::string& module) {
  const std::string prefix = "model.layers.";
  if (module.rfind(prefix, 0) == 0) {
    const size_t dot = module.find('.', prefix.size());
    if (dot != std::string::npos) {
      try {
        const int64_t layer = std::stoll(module.substr(prefix.size(), dot - prefix.size()));
        // Checkpoint order of every family's linears (model/arch/*.cc).
        static const char* const kOrder[] = {
            "self_attn.q_proj",   "self_attn.k_proj", "self_attn.v_proj",
            "self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_proj",
            "mlp.up_proj",        "mlp.gate_up_proj", "mlp.down_proj"};
        const std::string rest = module.substr(dot + 1);
        for (int64_t i = 0; i < static_cast<int64_t>(std::size(kOrder)); ++i) {
          if (rest == kOrder[i]) return {layer, i, module};
        }
      } catch (const std::exception&) {
      }
    }
  }
  return {INT64_MAX, 0, module};
}

}  // namespace

const ChannelStats* ActivationStats::Find(const std::string& module) const {
  for (const ChannelStats& s : linears) {
    if (s.module == module) return &s;
  }
  return nullptr;
}

SalienceSummary SummarizeSalience(const ChannelStats& s, double threshold) {
  SalienceSummary r;
  const size_t d = s.mean_abs.size();
  r.channels = static_cast<int64_t>(d);
  if (d == 0) return r;
  std::vector<float> sorted = s.mean_abs;
  std::sort(sorted.begin(), sorted.end());
  // The median of an even count is the mean of the two middle values.
  r.median_mean_abs = d % 2 ? sorted[d / 2] : 0.5 * (double{sorted[d / 2 - 1]} + sorted[d / 2]);
  int64_t salient = 0;
  double total = 0;
  for (size_t c = 0; c < d; ++c) {
    const double m = s.mean_abs[c];
    total += m;
    if (m > threshold * r.median_mean_abs) ++salient;
    if (m > r.top_mean_abs) {
      r.top_mean_abs = m;
      r.top_channel = static_cast<int64_t>(c);
    }
  }
  r.salient_share = static_cast<double>(salient) / static_cast<double>(d);
  const size_t top_n = std::max<size_t>(1, (d + 99) / 100);
  double top = 0;
  for (size_t i = 0; i < top_n; ++i) top += sorted[d - 1 - i];
  r.top1pct_mass = total > 0 ? top / total : 0.0;
  for (float m : s.max_abs) r.max_abs = std::max(r.max_abs, static_cast<double>(m));
  return r;
}

ActivationStats CollectActivationStats(const Model& model, const CalibrationBatch& batch) {
  model.RequireFp32Weights("collecting activation statistics");
  if (ArchitectureOf(model.config()).recurrent != nullptr) {
    throw Error("collecting activation statistics: model_type " + model.config().model_type +
                " is recurrent, and its layers have none of the attention and MLP points "
                "observed (docs/RECURRENT.md)");
  }
  const ModelConfig& c = model.config();
  const int64_t n_layers = c.num_hidden_layers, d = c.hidden_size;
  const int64_t qd = c.num_attention_heads * c.head_dim, inter = c.intermediate_size;
  const int64_t seq_len = batch.seq_len;
  if (batch.n_blocks <= 0 || seq_len <= 0 ||
      static_cast<int64_t>(batch.tokens.size()) != batch.n_blocks * seq_len) {
    throw Error("activation statistics need a calibration batch of at least one block");
  }
  const ModelWeights& mw = model.weights();
  const int64_t vocab = mw.embed.dim(0);
  // Per layer: the four distinct inputs (q/k/v, o, gate/up, down).
  std::vector<Accumulator> acc;
  for (int64_t l = 0; l < n_layers; ++l) {
    acc.emplace_back(d);
    acc.emplace_back(qd);
    acc.emplace_back(d);
    acc.emplace_back(inter);
  }
  const int64_t seqs_per_chunk = std::max<int64_t>(1, kChunkTokens / seq_len);
  const int64_t max_n = std::min(seqs_per_chunk, batch.n_blocks) * seq_len;
  std::vector<float> x(static_cast<size_t>(max_n * d));
  for (int64_t s0 = 0; s0 < batch.n_blocks; s0 += seqs_per_chunk) {
    const int64_t n_seq = std::min(seqs_per_chunk, batch.n_blocks - s0);
    const int64_t n = n_seq * seq_len;
    for (int64_t t = 0; t < n; ++t) {
      const int32_t id = batch.tokens[static_cast<size_t>(s0 * seq_len + t)];
      if (id < 0 || id >= vocab) {
        throw Error("calibration token " + std::to_string(id) + " is outside the vocabulary of " +
                    std::to_string(vocab));
      }
    }
    model.EmbedTokens(batch.tokens.data() + s0 * seq_len, n, x.data());
    for (int64_t l = 0; l < n_layers; ++l) {
      // The block walk, observed at the four linear inputs.
      const BlockObserver observe = [&](BlockPoint p, int64_t, const float* rows, int64_t rn,
                                        int64_t) {
        int slot = -1;
        if (p == BlockPoint::kAttnIn) slot = 0;
        if (p == BlockPoint::kAttnCtx) slot = 1;
        if (p == BlockPoint::kMlpIn) slot = 2;
        if (p == BlockPoint::kMlpAct) slot = 3;
        if (slot >= 0) acc[static_cast<size_t>(4 * l + slot)].Add(rows, rn);
      };
      model.BlockForwardBatch(l, x.data(), n_seq, seq_len, &observe);
    }
  }
  ActivationStats stats;
  stats.n_tokens = batch.n_blocks * seq_len;
  const double inv = 1.0 / static_cast<double>(stats.n_tokens);
  // Each linear reads its slot's input: q/k/v 0, o 1, gate/up 2, down 3.
  const std::vector<LinearSpec>& specs = ArchitectureOf(model.config()).linears;
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::vector<std::string> names = LinearNames(model.config(), l);
    for (size_t i = 0; i < names.size(); ++i) {
      const Accumulator& a = acc[static_cast<size_t>(4 * l + static_cast<int>(specs[i].slot))];
      ChannelStats s;
      s.module = names[i];
      s.mean_abs.resize(a.sum.size());
      for (size_t ch = 0; ch < a.sum.size(); ++ch)
        s.mean_abs[ch] = static_cast<float>(a.sum[ch] * inv);
      s.max_abs = a.max;
      stats.linears.push_back(std::move(s));
    }
  }
  return stats;
}

std::string SaveActivationStats(const ActivationStats& stats, const std::string& dir) {
  SafetensorsWriter w;
  w.SetMetadata("n_tokens", std::to_string(stats.n_tokens));
  w.SetMetadata("awq_activation_stats", "1");
  for (const ChannelStats& s : stats.linears) {
    AWQ_CHECK(s.mean_abs.size() == s.max_abs.size());
    const int64_t d = static_cast<int64_t>(s.mean_abs.size());
    Tensor mean(DType::kF32, {d}), max(DType::kF32, {d});
    std::memcpy(mean.data<float>(), s.mean_abs.data(), s.mean_abs.size() * sizeof(float));
    std::memcpy(max.data<float>(), s.max_abs.data(), s.max_abs.size() * sizeof(float));
    w.Add(s.module + kMeanSuffix, std::move(mean));
    w.Add(s.module + kMaxSuffix, std::move(max));
  }
  const std::string path = (std::filesystem::path(dir) / kActivationStatsFile).string();
  w.WriteFile(path);
  return path;
}

ActivationStats LoadActivationStats(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) {
    file = (std::filesystem::path(path) / kActivationStatsFile).string();
  }
  if (!std::filesystem::exists(file)) throw Error(file + ": no such file");
  const SafetensorsFile f = SafetensorsFile::Open(file);
  ActivationStats stats;
  const auto it = f.metadata().find("n_tokens");
  if (it == f.metadata().end()) throw Error(file + ": metadata has no n_tokens");
  try {
    size_t used = 0;
    stats.n_tokens = std::stoll(it->second, &used);
    if (used != it->second.size() || stats.n_tokens <= 0) throw std::invalid_argument("");
  } catch (const std::exception&) {
    throw Error(file + ": metadata n_tokens '" + it->second + "' is not a positive integer");
  }
  // module -> (mean, max)
  std::map<std::string, std::pair<std::vector<float>, std::vector<float>>> found;
  std::map<std::string, std::pair<bool, bool>> have;
  for (const std::string& name : f.names()) {
    const bool is_mean = EndsWith(name, kMeanSuffix), is_max = EndsWith(name, kMaxSuffix);
    if (!is_mean && !is_max) {
      throw Error(file + ": tensor " + name + " ends in neither " + kMeanSuffix + " nor " +
                  kMaxSuffix);
    }
    const SafetensorsTensorInfo* info = f.Find(name);
    if (info->dtype != DType::kF32 || info->shape.size() != 1) {
      throw Error(file + ": tensor " + name + " must be a 1-D F32 vector, got " + info->dtype_name +
                  " " + ShapeToString(info->shape));
    }
    const Tensor t = f.Get(name);
    const float* p = t.data<float>();
    std::vector<float> v(p, p + t.numel());
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i]) || v[i] < 0) {
        throw Error(file + ": tensor " + name + " has the invalid value " + std::to_string(v[i]) +
                    " at channel " + std::to_string(i));
      }
    }
    const std::string module =
        name.substr(0, name.size() - std::strlen(is_mean ? kMeanSuffix : kMaxSuffix));
    auto& slot = found[module];
    (is_mean ? slot.first : slot.second) = std::move(v);
    (is_mean ? have[module].first : have[module].second) = true;
  }
  std::vector<std::string> modules;
  for (const auto& [module, h] : have) {
    if (!h.first) throw Error(file + ": tensor " + module + kMeanSuffix + " is missing");
    if (!h.second) throw Error(file + ": tensor " + module + kMaxSuffix + " is missing");
    const auto& [mean, max] = found[module];
    if (mean.size() != max.size()) {
      throw Error(file + ": tensor " + module + kMaxSuffix + " has " + std::to_string(max.size()) +
                  " channels but " + module + kMeanSuffix + " has " + std::to_string(mean.size()));
    }
    modules.push_back(module);
  }
  std::sort(modules.begin(), modules.end(),
            [](const std::string& a, const std::string& b) { return ModuleKey(a) < ModuleKey(b); });
  for (const std::string& m : modules) {
    ChannelStats s;
    s.module = m;
    s.mean_abs = std::move(found[m].first);
    s.max_abs = std::move(found[m].second);
    stats.linears.push_back(std::move(s));
  }
  return stats;
}

}  // namespace awq
