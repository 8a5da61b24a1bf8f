// Quantization of the recurrent families' layers (Mamba, RWKV; docs/RECURRENT.md), the
// counterpart of QuantizeBlock / AddBlockTensors for them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "awq/quantize.h"
#include "quant/quantize_block.h"

namespace awq {

struct RecurrentSpec;

// Folds an AWQ scale s [D] into a layer: the norm `norm`'s weight (and LayerNorm bias) divided by
// s, the input columns of every linear whose scale_norm is `norm` multiplied by s. Exact in
// arithmetic: the layer computes the same function.
void FoldRecurrentScale(const RecurrentSpec& spec, LayerWeights& lw, const std::string& norm,
                        const std::vector<float>& s);

// Refuses what recurrent layers cannot take (gptq and awq+gptq, ggml types) and checks every
// linear's group size, naming the layer, before any work.
void CheckRecurrentQuantize(const ModelConfig& config, const QuantizeOptions& options);

// QuantizeBlock for a recurrent layer: awq (scale search and fold into the norm that feeds each
// group, then clipping) or rtn, then round-to-nearest of every converted linear.
void QuantizeRecurrentBlock(Model& model, int64_t layer, const QuantizeOptions& options,
                            CalibrationActivations& acts,
                            std::map<std::string, QuantizedLinear>& linears,
                            QuantizeResult& result);

// The layer's tensors in the description's order, quantized linears from `linears`.
void AddRecurrentBlockTensors(AwqCheckpointWriter& w, const Model& model, int64_t layer,
                              const std::map<std::string, QuantizedLinear>& linears);

}  // namespace awq
