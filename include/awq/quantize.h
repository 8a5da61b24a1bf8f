// Whole-model quantization: RTN, AWQ's block-by-block pipeline (calibration pass, scale
// search, folding, clip search, quantization), GPTQ, or AWQ's scaling and clipping followed by
// GPTQ rounding, on a loaded fp32 model.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "awq/calibration.h"
#include "awq/gguf.h"
#include "awq/gptq.h"
#include "awq/quant_config.h"
#include "awq/quantizer.h"

namespace awq {

class Model;
class Tokenizer;

// kGptq: GPTQ rounding block by block, each block fed the output of the blocks already
// quantized. kAwqGptq: AWQ's scale and clip searches, then GPTQ rounding of the scaled and
// clipped weights (docs/GPTQ.md).
enum class QuantMethod : uint8_t { kRtn, kAwq, kGptq, kAwqGptq, kCount };
const char* QuantMethodName(QuantMethod m);
// "rtn", "awq", "gptq", "awq+gptq"; anything else is an awq::Error listing the methods.
QuantMethod ParseQuantMethod(const std::string& name);

struct QuantizeOptions {
  QuantMethod method = QuantMethod::kAwq;
  QuantConfig config;
  std::string calib_data;  // file or folder (every method but rtn)
  GptqOptions gptq;        // gptq and awq+gptq
  // Activation memory the block walks may hold at once: the calibration batch is walked in
  // chunks of whole sequences that fit (at least one). It changes no result: squared errors and
  // statistics are summed in row order whatever the chunking.
  uint64_t activation_budget_bytes = uint64_t{256} << 20;
  // > 0: score the scale candidates on the first search_samples calibration sequences only
  // (statistics, clipping and the next block's input still use all of them). 0: all.
  int64_t search_samples = 0;
  // > 1: a coarse-to-fine scale grid. The first pass scores every grid_step-th ratio (i = 0,
  // grid_step, 2 grid_step, ... < n_grid) and the identity; the second the ratios within
  // grid_step - 1 of the first pass's best. About (n_grid / grid_step + 2 grid_step - 1)
  // candidates instead of n_grid + 1. 0 or 1: every ratio (AutoAWQ's search).
  int grid_step = 0;
  // Mixture-of-experts layers: an expert that the calibration batch routes fewer tokens to gets
  // no searches of its own (no down_proj scale, no clipping, no GPTQ Hessian) and is rounded to
  // nearest instead (RTN; its gate/up still carry the layer's shared gate/up scale, which keeps
  // the model exact before rounding). 16 tokens is the smallest count at which a per-channel
  // mean and a clip sample say more about an expert's inputs than noise does.
  int64_t min_expert_tokens = 16;
  // GGUF output (QuantizeToGguf): the ggml type of every converted linear by module name, from
  // llama.cpp's per-tensor rule (gguf_recipe.h). Non-empty: the searches quantize with each
  // type's own quantizer and QuantizeResult::ggml_linears holds the blocks; the QuantParams of
  // `config` are not used. Linears absent from it (or of a float type) stay in full precision.
  std::map<std::string, GgmlType> ggml_types;
  // Called after each decoder block with (blocks done, blocks total).
  std::function<void(int64_t, int64_t)> progress;
};

// One linear's weights in a ggml type: rows x GgmlRowBytes(type, in) bytes.
struct GgmlTensor {
  GgmlType type = GgmlType::kF32;
  std::vector<uint8_t> bytes;
};

// What happened to one decoder block, for the summary and for tests.
struct BlockReport {
  int64_t layer = 0;
  // Per scale group ("qkv", "o", "gate_up", "down"): the chosen grid index (-1: identity
  // scales won) and the output MSE with the chosen scales vs with RTN (index of ratio 0 without
  // duo scaling is plain RTN only when duo is off; "rtn_loss" is always the identity-scale loss).
  struct Group {
    std::string name;
    int best_index = -1;
    double best_loss = 0;
    double identity_loss = 0;
  };
  std::vector<Group> groups;
  // gptq and awq+gptq: GPTQ's reported loss of every quantized linear, in quantization order
  // (GptqResult::loss: the proxy error tr((W - Q) H (W - Q)^T) / 2 on this block's inputs).
  struct GptqLinear {
    std::string name;
    double loss = 0;
  };
  std::vector<GptqLinear> gptq;
  // A mixture-of-experts layer (awq, gptq, awq+gptq): the calibration tokens the router sent to
  // each expert, and the experts below QuantizeOptions::min_expert_tokens, rounded by RTN.
  std::vector<int64_t> expert_tokens;
  std::vector<int64_t> rtn_experts;
};

struct StageSeconds {
  double calibration = 0;  // loading text, tokenizing, embedding
  double capture = 0;      // running the original blocks, recording linear inputs
  double scale_search = 0;
  double clip_search = 0;
  double quantize = 0;  // rtn rounding and dequantization
  double gptq = 0;      // Hessians, inverse factors and GPTQ sweeps (block forwards: capture)
  double write = 0;     // QuantizeToFolder: staging blocks and assembling the output
  double total = 0;
};

struct QuantizeResult {
  QuantMethod method = QuantMethod::kAwq;
  // Every quantized linear by module name ("model.layers.0.self_attn.q_proj"); linears that the
  // config leaves unconverted are absent and stay fp32 in the model.
  std::map<std::string, QuantizedLinear> linears;
  std::vector<BlockReport> blocks;
  StageSeconds seconds;
  int64_t calib_blocks = 0;
  int64_t calib_tokens = 0;
  int64_t peak_rss_bytes = 0;
  // Floating-point operations of the scale search (candidate forwards, Gram products), for its
  // achieved rate against the machine's GEMM peak.
  double search_flops = 0;
  // ggml_types non-empty: each converted linear's blocks, rows in Hugging Face order.
  std::map<std::string, GgmlTensor> ggml_linears;
  // QuantizeToFolder: blocks found staged by an earlier, interrupted run of the same command.
  int64_t resumed_blocks = 0;
};

// Quantizes `model` in place: AWQ scales folded into norms and linears, clipping applied, and
// every converted linear replaced by its dequantized weights, so the model can be evaluated as
// is; the integer codes come back in the result for saving. Throws awq::Error for options that
// do not fit the model (a group size that does not divide a layer's width names the layer).
QuantizeResult QuantizeModel(Model& model, const Tokenizer& tokenizer,
                             const QuantizeOptions& options);

// Quantizes the model at `model_path` (GGUF file or Hugging Face folder) straight to the
// checkpoint folder `out`, as QuantizeModel() then SaveQuantizedModel() would (the same bytes),
// reading one block's weights at a time from the mapped input and staging each finished block in
// "<out>.partial/" (docs/STREAMING.md). Memory: one block's fp32 weights, the calibration
// activations and the activation budget's chunk. A run killed at any point and started again with
// the same arguments resumes after the last staged block and writes the same bytes; one started
// with other inputs or options on the same output is an awq::Error naming what differs. `out`
// appears only when complete. The result holds no codes (`linears` is empty).
QuantizeResult QuantizeToFolder(const std::string& model_path, const Tokenizer& tokenizer,
                                const QuantizeOptions& options, const std::string& out,
                                uint64_t max_shard_bytes, bool overwrite);

// Writes the model that QuantizeModel() returned `r` for as a Hugging Face folder in the AutoAWQ
// layout (qc.version): quantized linears from r.linears, every other tensor from the model (with
// the AWQ scales already folded into its norms), written atomically to `dir`.
void SaveQuantizedModel(const Model& model, const QuantizeResult& r, const QuantConfig& qc,
                        const Tokenizer* tokenizer, const std::string& dir,
                        uint64_t max_shard_bytes, bool overwrite);

// Peak resident set size of this process (VmHWM), in bytes; 0 when unknown.
int64_t PeakRssBytes();

}  // namespace awq
