// Where a model's fp32 weights come from, under their Hugging Face names, whatever the file
// format: a GGUF file (names mapped, llama.cpp's q/k row permutation undone) or a Hugging Face
// safetensors folder.
#pragma once

#include <memory>
#include <string>

#include "awq/model_config.h"
#include "awq/tensor.h"

namespace awq {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // The file or folder, for error messages.
  virtual const std::string& path() const = 0;
  virtual const ModelConfig& config() const = 0;
  // Hugging Face names: "model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight".
  virtual bool Has(const std::string& hf_name) const = 0;
  // An owned fp32 tensor in the Hugging Face layout ([out, in] for linears). Throws awq::Error
  // naming the file and the tensor when it is missing or cannot be converted.
  virtual Tensor GetF32(const std::string& hf_name) const = 0;
  // The tensor as stored when that is F32, F16 or BF16 in the Hugging Face layout (a view of the
  // mapped file, no copy), else GetF32's conversion.
  virtual Tensor GetStored(const std::string& hf_name) const { return GetF32(hf_name); }
  // Drops the resident pages of a tensor read from a mapped file (see MappedFile::DropPages).
  virtual void ReleasePages(const std::string& /*hf_name*/) const {}
};

// Throws awq::Error naming `file`, the tensor, the element (row and column for a matrix) and the
// value when float tensor `t` (F32, F16 or BF16) holds a NaN or an infinity: such a weight makes
// every activation after it NaN, and the quantizer would write a checkpoint of NaN scales. The
// weight sources call it on every float tensor they hand out; other dtypes pass.
void CheckFiniteWeights(const std::string& file, const std::string& name, const Tensor& t);

// A GGUF file of a Llama-family model.
std::unique_ptr<WeightSource> OpenGgufWeights(const std::string& path);
// A Hugging Face folder: config.json and model.safetensors or a sharded index.
std::unique_ptr<WeightSource> OpenHfWeights(const std::string& dir);
// Either of the above, by what `path` is (a folder or a file).
std::unique_ptr<WeightSource> OpenWeights(const std::string& path);

// Undoes llama.cpp's convert_hf_to_gguf permutation of q/k rows for `n_heads` heads: within each
// head, GGUF row 2j + t holds Hugging Face row t * hd/2 + j (t in {0, 1}). [rows, cols] fp32.
Tensor UnpermuteGgufQk(const Tensor& w, int64_t n_heads);

}  // namespace awq
