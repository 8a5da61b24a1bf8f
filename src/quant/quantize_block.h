// One decoder block's quantization, shared by the in-memory pipeline (QuantizeModel) and the
// streaming one (QuantizeToFolder): the block's weights are in the model, its input activations
// in `x`, and what comes out is the block's codes, its report, and `x` advanced to the next
// block's input.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "awq/quantize.h"

namespace awq {

class AwqCheckpointWriter;
struct Architecture;
struct ExpertLinearSpec;
struct LayerWeights;
class Tensor;
class Model;
class SafetensorsFile;
struct ModelConfig;

// The calibration batch: its tokens, then (EmbedCalibration) x [n_seq * seq_len, D].
struct CalibrationActivations {
  std::vector<int32_t> tokens;
  std::vector<float> x;
  int64_t n_seq = 0;
  int64_t seq_len = 0;
  uint64_t token_hash = 0;  // FNV-1a 64 of the token ids, for resume fingerprints
};

// Builds the calibration batch of `options` (every method but rtn) for a model of `config`.
// Token ids outside the vocabulary are an awq::Error naming the data.
CalibrationActivations BuildCalibration(const ModelConfig& config, const Tokenizer& tokenizer,
                                        const QuantizeOptions& options);
// BuildCalibration for every method but rtn (an empty batch for rtn), recording the batch's size
// and the time taken in `result`.
CalibrationActivations StartCalibration(const ModelConfig& config, const Tokenizer& tokenizer,
                                        const QuantizeOptions& options, QuantizeResult& result);
// Embeds the batch's tokens into acts.x.
void EmbedCalibration(const Model& model, CalibrationActivations& acts);

// Checks every layer's linears against the config (a group size that does not divide a width
// names the layer) before any work.
void CheckLinearShapes(const ModelConfig& config, const QuantizeOptions& options);

// Sequences per chunk of the calibration batch that the block walks hold at once, from the
// options' activation budget (at least 1, at most n_seq).
int64_t ChunkSequences(const ModelConfig& config, const QuantizeOptions& options, int64_t n_seq,
                       int64_t seq_len);

// Quantizes layer `layer` of `model` (its fp32 weights loaded): AWQ's searches, folding and
// clipping, then RTN or GPTQ rounding. The block's weights are left dequantized, its codes are
// added to `linears`, its report and stage times to `result`; `acts.x` becomes the next block's
// input.
void QuantizeBlock(Model& model, int64_t layer, const QuantizeOptions& options,
                   CalibrationActivations& acts, std::map<std::string, QuantizedLinear>& linears,
                   QuantizeResult& result);

// The fp32 rows [e.rows, e.in] of a mixture of experts' linear in the layer's stacked expert
// tensors (experts_gate_up, experts_down, shared_gate_up, shared_down).
const float* ExpertRows(const LayerWeights& lw, const ModelConfig& config,
                        const ExpertLinearSpec& e);

// `qc` with the family's modules that stay in full precision (Architecture::default_not_convert:
// a mixture of experts' router) added to modules_to_not_convert, as the written
// quantization_config must list them for transformers and vLLM. A recurrent linear with a
// narrow input (Mamba's dt_proj) whose width the group size does not divide gets one group per
// row in the awqcpp_packed layout (an override) and is added to modules_to_not_convert in
// AutoAWQ's, which hold one group size for every linear.
QuantConfig WithFamilyExclusions(QuantConfig qc, const ModelConfig& config);

// The block's norms by the family's names (empty name: the family has none; empty tensor: the
// model has none), in the order checkpoints store them.
std::array<std::pair<const char*, const Tensor*>, 6> BlockNorms(const Architecture& arch,
                                                                const LayerWeights& lw);

// The block's tensors as SaveQuantizedModel writes them, in its order: norms, then each linear
// (quantized from `linears`, else its fp32 rows) with its bias.
void AddBlockTensors(AwqCheckpointWriter& w, const Model& model, int64_t layer,
                     const std::map<std::string, QuantizedLinear>& linears);
// The same entries, their stored tensors read from a staged file that holds what
// AddBlockTensors' entries store (AwqCheckpointWriter::StoredTensors).
void AddStagedBlock(AwqCheckpointWriter& w, const ModelConfig& config, int64_t layer,
                    const QuantConfig& qc, const std::shared_ptr<const SafetensorsFile>& file);

}  // namespace awq
