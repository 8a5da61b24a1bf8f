// Recurrent model families (Mamba v1, RWKV-4) as data: the tensors and linears of their layers
// under their Hugging Face names, and the fixed-size per-layer state that takes the place of the
// KV cache. The blocks themselves (src/model/recurrent.cc) run inside Model::Forward like the
// attention blocks; quantization reads `linears` (src/quant/quantize_recurrent.cc).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "awq/model_config.h"
#include "awq/tensor.h"

namespace awq {

class WeightSource;
struct Architecture;
struct LayerWeights;
struct ModelWeights;

// Which recurrent block a family runs.
enum class RecurrentKind : uint8_t { kMamba, kRwkv, kCount };

// One tensor of a recurrent layer, its name under the layer prefix and its shape for a config.
struct RecurrentTensor {
  std::string name;  // "mixer.in_proj.weight"
  Shape shape;
};

// One linear of a recurrent layer and how quantization treats it (docs/RECURRENT.md):
// `scale_norm` names the layer's norm whose output is this linear's input, channel for channel,
// so an AWQ scale s folds exactly into it (weight, and bias for a LayerNorm, divided by s);
// linears with the same scale_norm share one scale. Empty: no exact fold, so clipping and
// round-to-nearest only. `narrow_input`: the input width is a small model constant (Mamba's
// dt_proj: time_step_rank, 48 to 160) that the usual group sizes need not divide; such a linear
// then takes one group per row where the layout holds per-linear groups, and stays in full
// precision in AutoAWQ's layouts (WithFamilyExclusions).
struct RecurrentLinear {
  const char* name;             // "mixer.in_proj" under the layer prefix
  const char* scale_norm = "";  // "norm", "ln1", "ln2", or ""
  bool narrow_input = false;
};

struct RecurrentSpec {
  RecurrentKind kind;
  // Checkpoint names outside the layers, and the layers' prefix ("backbone.layers." + N + ".").
  const char* layer_prefix;
  const char* embed;       // [V, D]
  const char* final_norm;  // module: ".weight" [D], and ".bias" [D] for a LayerNorm
  const char* lm_head;     // [V, D], absent when tied
  bool final_norm_bias;    // the final norm is a LayerNorm with bias (RWKV), else an RMSNorm
  // The linears of a layer in checkpoint order, and every tensor of layer `l` (the linears'
  // weights and biases included) with its shape; a missing one is an error naming it.
  std::vector<RecurrentLinear> linears;
  std::vector<RecurrentTensor> (*tensors)(const ModelConfig& c, int64_t layer);
};

// "backbone.layers.3." for Mamba, "rwkv.blocks.3." for RWKV.
std::string RecurrentLayerPrefix(const RecurrentSpec& spec, int64_t layer);

// The Hugging Face module names of layer `layer`'s linears, in checkpoint order.
std::vector<std::string> RecurrentLinearNames(const RecurrentSpec& spec, int64_t layer);

// Floats of state per layer: Mamba (K - 1) * Di convolution inputs then Di * N scan state;
// RWKV 2 * D token-shift rows (time-mix, channel-mix) then 3 * A WKV numerator, denominator and
// running maximum.
int64_t RecurrentStateFloats(const RecurrentSpec& spec, const ModelConfig& c);

// The parameters a recurrent model of this config holds.
int64_t RecurrentParameterCount(const RecurrentSpec& spec, const ModelConfig& c);

// Reads every tensor of a recurrent model (embedding, final norm, LM head, each layer's
// `tensors`) as fp32 into `w`; shapes are checked against the config, a mismatch or a missing
// tensor is an awq::Error naming the file and the tensor.
void FetchRecurrentWeights(const WeightSource& src, const RecurrentSpec& spec, ModelWeights& w);
LayerWeights FetchRecurrentLayer(const WeightSource& src, const RecurrentSpec& spec, int64_t l);

// The config keys every recurrent family shares (vocab_size, hidden_size, num_hidden_layers,
// bos/eos_token_id, tie_word_embeddings, dtype/torch_dtype); the attention keys are neither read
// nor required. Errors name `source`, the key and the value.
void ReadRecurrentCommon(const nlohmann::json& root, const std::string& source, ModelConfig& c);

}  // namespace awq
