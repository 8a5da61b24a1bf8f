// AWQ for llama.cpp users: a model quantized into a GGUF file whose tensors have the types
// llama-quantize would give them (gguf_recipe.h), with AWQ's scales and clipping searched with
// those types' own quantizers and folded into the norms and previous linears (docs/GGUF.md).
#pragma once

#include <string>

#include "awq/gguf_recipe.h"
#include "awq/quantize.h"

namespace awq {

class Tokenizer;

struct GgufExportOptions {
  GgufFileType file_type = GgufFileType::kQ4_K_M;
  bool overwrite = false;  // replace an existing output file
};

// Quantizes the model at `model_path` (a GGUF file or a Hugging Face folder) into the GGUF file
// `out_path`:
//  - every tensor gets llama-quantize's type for gguf.file_type (GgufTensorType);
//  - options.method awq: the scale and clip searches quantize each linear with its ggml type's
//    round trip, the scales are folded, and the folded, clipped weights are quantized with the
//    same quantizer; rtn: each linear quantized as llama-quantize would (no search);
//  - the metadata (architecture, tokenizer, chat template) is the input's, with general.file_type
//    set, keys of an earlier quantization ("quantize.*") dropped, and the AWQ settings recorded
//    under "awq.*"; q/k rows in llama.cpp's interleaved order, Gemma's norms as 1 + w;
//  - from a Hugging Face folder, the metadata is written from its config (GgufConfigMetadata)
//    and `tokenizer` (TokenizerGgufMetadata), each read back first: a setting GGUF cannot hold,
//    or a tokenizer whose GGUF form encodes a probe text differently, is an error before any
//    work.
// Streams: one block's fp32 weights in memory at a time, each block written as soon as it is
// final, tensors in llama.cpp's converter's order. The file appears under `out_path` only when
// complete. options.ggml_types is filled here.
// Errors (an existing output without overwrite, the output equal to the input, a family or input
// kind not supported, gptq) are awq::Error naming what is wrong.
QuantizeResult QuantizeToGguf(const std::string& model_path, const Tokenizer& tokenizer,
                              QuantizeOptions options, const GgufExportOptions& gguf,
                              const std::string& out_path);

}  // namespace awq
