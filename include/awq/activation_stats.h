// Activation salience: per-channel statistics of every decoder linear's input over calibration
// tokens, their summary (share of salient channels), and their file activation_stats.safetensors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace awq {

class Model;
struct CalibrationBatch;

// The statistics of one linear's input x [n_tokens, in].
struct ChannelStats {
  std::string module;           // "model.layers.0.self_attn.q_proj" (LinearNames order)
  std::vector<float> mean_abs;  // [in] mean over tokens of |x[t, c]| (summed in double)
  std::vector<float> max_abs;   // [in] max over tokens of |x[t, c]|
};

struct ActivationStats {
  int64_t n_tokens = 0;  // calibration tokens every statistic is taken over
  // Seven per decoder layer in LinearNames() order. q/k/v (and gate/up) share their input and
  // so their statistics; each still gets its own entry, named as the module it feeds.
  std::vector<ChannelStats> linears;

  // nullptr when no linear has that name.
  const ChannelStats* Find(const std::string& module) const;
};

// Salience threshold: a channel is salient when its mean |x| exceeds this multiple of the
// layer's median mean |x|. LLM activations have a few outlier channels 10-100x above the rest
// (the AWQ paper protects ~1%); 5x the median separates them from the bulk, which spans a
// factor of about 2-3 around the median in the Llama-family models we measured.
inline constexpr double kDefaultSalienceThreshold = 5.0;

struct SalienceSummary {
  int64_t channels = 0;
  double median_mean_abs = 0;
  double salient_share = 0;  // share of channels with mean |x| > threshold * median
  double top1pct_mass = 0;   // share of the total mean |x| held by the top 1% of channels
                             // (at least one channel)
  int64_t top_channel = 0;   // the channel with the largest mean |x|
  double top_mean_abs = 0;   // its mean |x|
  double max_abs = 0;        // the largest |x| of any channel and token
};
SalienceSummary SummarizeSalience(const ChannelStats& s,
                                  double threshold = kDefaultSalienceThreshold);

// Runs the ORIGINAL model in fp32 over the calibration batch block by block with its
// module-level forwards (Model::Norm / AttentionBatch / MlpBatch, as QuantizeModel captures
// linear inputs) and accumulates the statistics of every linear's input. The batch is processed
// a few sequences at a time through all blocks, so memory is O(sequences x seq_len x
// intermediate_size), not O(batch). Call from outside ThreadPool::Global()'s tasks.
ActivationStats CollectActivationStats(const Model& model, const CalibrationBatch& batch);

// The file name SaveActivationStats writes inside a checkpoint folder.
inline constexpr const char* kActivationStatsFile = "activation_stats.safetensors";

// Writes `dir`/activation_stats.safetensors atomically: F32 tensors "<module>.input_mean_abs"
// and "<module>.input_max_abs" [in] for every linear, metadata "n_tokens" (decimal) and
// "awq_activation_stats" = "1" (the format version). Returns the path written.
std::string SaveActivationStats(const ActivationStats& stats, const std::string& dir);

// Reads a file written by SaveActivationStats; `path` is the file or the folder holding it.
// Throws awq::Error naming the file and the tensor: a missing or malformed n_tokens, a tensor
// that is not 1-D F32, a mean without its max (or the reverse) or with a different length, a
// tensor name without either suffix, a negative or non-finite value.
ActivationStats LoadActivationStats(const std::string& path);

}  // namespace awq
