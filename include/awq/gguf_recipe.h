// llama.cpp's file types ("ftype": Q4_0, Q4_K_M, Q3_K_M, ...) and the rule by which
// llama-quantize gives each tensor of a model its ggml type: which tensors are quantized at all,
// which get more bits (attn_v and ffn_down in some layers, the output head), and the fallback
// types for tensors whose rows are not a multiple of a k-quant's 256-value super-block. awq.cpp
// applies the same rule so that its GGUF files hold the same types, tensor by tensor, as
// llama-quantize's output of the same ftype: the sizes are equal and only the values differ.
#pragma once

#include <cstdint>
#include <string>

#include "awq/gguf.h"

namespace awq {

// Numbered as llama.cpp's llama_ftype (stored in general.file_type).
enum class GgufFileType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 7,
  kQ5_0 = 8,
  kQ5_1 = 9,
  kQ2_K = 10,
  kQ3_K_S = 11,
  kQ3_K_M = 12,
  kQ3_K_L = 13,
  kQ4_K_S = 14,
  kQ4_K_M = 15,
  kQ5_K_S = 16,
  kQ5_K_M = 17,
  kQ6_K = 18,
  kIQ4_NL = 25,
  kBF16 = 32,
};

// "Q4_K_M" (any case) -> the type; an unknown name is an awq::Error listing the choices.
GgufFileType ParseGgufFileType(const std::string& name);
std::string GgufFileTypeName(GgufFileType t);
// Every supported name, comma-separated, for help texts and errors.
std::string GgufFileTypeNames();

// What the rule needs to know of the model.
struct GgufRecipeModel {
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  bool has_output = true;  // an output.weight of its own (false: tied to token_embd)
  int64_t n_expert = 0;    // a mixture of experts' experts per layer (0: dense)
};

// True when llama-quantize quantizes the tensor at all: 2-D (or more) "*weight" tensors other
// than norms; everything else keeps its type.
bool GgufQuantizesTensor(const std::string& gguf_name, int n_dims);

// The ggml type llama-quantize (without --pure, without an importance matrix) gives the tensor
// `gguf_name` ("blk.3.attn_v.weight") of `cols` values per row in a file of type `ft`.
GgmlType GgufTensorType(GgufFileType ft, const std::string& gguf_name, int64_t cols,
                        const GgufRecipeModel& model);

}  // namespace awq
