// AWQ checkpoints as Hugging Face folders: the AutoAWQ GEMM layout (what transformers, vLLM and
// ExLlama read) and our packed layout for other bit widths, written atomically and read back.
// Bit drawings of both layouts: docs/LAYOUTS.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "awq/model_config.h"
#include "awq/quant_config.h"
#include "awq/quantizer.h"
#include "awq/safetensors.h"
#include "awq/tensor.h"

namespace awq {

class Tokenizer;

// One linear in the GEMM layout ("version": "gemm", 4-bit):
struct AwqGemmTensors {
  Tensor qweight;  // [in, out/8] I32: word (i, c) holds the codes of logical output columns
                   // 8c + ORDER[n] in nibble n (bits 4n..4n+3), ORDER = {0, 2, 4, 6, 1, 3, 5, 7}
  Tensor qzeros;   // [in/g, out/8] I32: the zeros, packed the same way
  Tensor scales;   // [in/g, out] F16: transposed from the quantizer's [out, in/g]
};

// The pack/unpack functions spread rows over ThreadPool::Global(): call them from outside its
// tasks.
//
// Packs a 4-bit QuantizedLinear. Throws awq::Error when bits != 4 or out % 8 != 0. With
// zero_point off, qzeros holds the implicit zero 8 everywhere.
AwqGemmTensors PackAwqGemm(const QuantizedLinear& q);
// The inverse. scales may be F16, BF16 or F32. `group_size` -1 means one group per row; the
// shapes must agree with it. With zero_point off every stored zero must be 2^(bits-1) and the
// result has no explicit zeros. Throws awq::Error naming `name_for_errors`, the tensor and its
// shape or dtype.
QuantizedLinear UnpackAwqGemm(const Tensor& qweight, const Tensor& qzeros, const Tensor& scales,
                              int bits, int64_t group_size, const std::string& name_for_errors,
                              bool zero_point = true);

// One linear in AutoAWQ's GEMV layout ("version": "gemv", 4-bit, rows = output channels):
struct AwqGemvTensors {
  Tensor qweight;  // [out, in/8] I32: word (o, c) holds input 8c + n in nibble n, in order
  Tensor qzeros;   // [out, W] I32: the zero of group 8w + n in nibble n; W = AwqGemvZerosWidth
  Tensor scales;   // [out, 8W] F16: scale of group g in column g, zero padding after the last
};
// W: ceil(groups / 8) rounded up to a multiple of 2 (group 64) or 4 (group 32), as AutoAWQ
// allocates it.
int64_t AwqGemvZerosWidth(int64_t in, int64_t group_size);
AwqGemvTensors PackAwqGemv(const QuantizedLinear& q);
// The inverse; padding of any width is accepted. Throws awq::Error naming the tensor.
QuantizedLinear UnpackAwqGemv(const Tensor& qweight, const Tensor& qzeros, const Tensor& scales,
                              int bits, int64_t group_size, const std::string& name_for_errors,
                              bool zero_point = true);

// One linear in our packed layout ("version": "awqcpp_packed", 2..8 bits):
struct AwqPackedTensors {
  Tensor qweight;  // [in, W] I32, W = ceil(out * bits / 32): row i is a little-endian bit
                   // stream holding the code of output column o in bits [o*bits, (o+1)*bits)
  Tensor qzeros;   // [in/g, W] I32: the zeros, packed the same way
  Tensor scales;   // [in/g, out] F16 (as in GEMM)
};
AwqPackedTensors PackAwqPacked(const QuantizedLinear& q);
QuantizedLinear UnpackAwqPacked(const Tensor& qweight, const Tensor& qzeros, const Tensor& scales,
                                int bits, int64_t group_size, const std::string& name_for_errors,
                                bool zero_point = true);

// Collects a quantized model and writes it as a Hugging Face folder in the layout named by the
// QuantConfig's version.
class AwqCheckpointWriter {
 public:
  // The dtype of every tensor that is not quantized (embeddings, norms, lm_head, biases): F16
  // by default, as AutoAWQ saves (its kernels compute in fp16); BF16 or F32 keep more range.
  // Quantization scales are always F16, which the GEMM kernels require. A value that overflows
  // F16 is an awq::Error naming the tensor.
  DType dtype = DType::kF16;
  // The method that produced the codes ("rtn", "awq", "gptq", "awq+gptq"), recorded as
  // quant_config.json's "awqcpp_method" when not empty. config.json's quant_method stays "awq"
  // whatever it is: that names the layout transformers and vLLM load.
  std::string method;

  // A full-precision tensor under its Hugging Face name ("model.norm.weight"). F32/F16/BF16
  // tensors are converted to `dtype` at Write(); integer tensors are kept. A 2-D "<m>.weight"
  // of a linear (anything but embeddings and lm_head) marks <m> as left unquantized: Write()
  // adds it to modules_to_not_convert so transformers keeps it an nn.Linear.
  void AddTensor(const std::string& hf_name, Tensor t);
  // A quantized linear, e.g. module_name "model.layers.0.self_attn.q_proj"; written as
  // <module>.qweight/.qzeros/.scales. Packed at once (the codes are not kept).
  void AddQuantized(const std::string& module_name, const QuantizedLinear& q);

  // Streaming writers stage a model block by block and assemble it at the end:
  // StoredTensors() gives the tensors Write() would store for the entries added so far (names,
  // dtype and layout final), to be saved to a staging file; AddStaged / AddStagedQuantized add
  // an entry whose stored tensors lie in such a file, copied (not loaded) at Write(). The
  // quantized form needs the linear's settings and shape for the config it writes.
  std::vector<std::pair<std::string, Tensor>> StoredTensors(const QuantConfig& qc) const;
  void AddStaged(const std::string& hf_name, std::shared_ptr<const SafetensorsFile> file);
  void AddStagedQuantized(const std::string& module_name, const QuantParams& params, int64_t out,
                          int64_t in, std::shared_ptr<const SafetensorsFile> file);

  // Writes `dir`: model.safetensors (or shards of at most max_shard_bytes plus
  // model.safetensors.index.json), config.json (`config_json`, the model's config.json text as
  // HfConfigToJson gives it, plus "quantization_config" and the stored dtype),
  // quant_config.json (AutoAWQ's legacy file), generation_config.json and, when `tokenizer` is
  // not null, the tokenizer files. Everything goes to "<dir>.tmp-<pid>" first and is renamed
  // into place, so `dir` is never half-written. An existing `dir` is an awq::Error unless
  // `overwrite`, in which case it is replaced. Also an error: a quantized linear whose bits,
  // group size or zero point the layout cannot hold (version "gemm" needs every linear at the
  // config's 4-bit setting).
  void Write(const std::string& dir, const std::string& config_json, const QuantConfig& qc,
             const Tokenizer* tokenizer, uint64_t max_shard_bytes, bool overwrite) const;

 private:
  // One entry per AddTensor / AddQuantized call, in call order (the order of the shards).
  struct Entry {
    std::string name;  // tensor name, or module name when quantized
    Tensor tensor;     // the full-precision tensor (not quantized)
    bool quantized = false;
    QuantParams params;  // quantized only, like the fields below
    int64_t out = 0;
    int64_t in = 0;
    // Packed in the GEMM layout when it can hold the linear (4 bits, out % 8 == 0), else in ours;
    // Write() converts when the chosen layout differs.
    bool gemm = false;
    Tensor qweight, qzeros, scales;
    int ndim = 0;  // of the full-precision tensor
    // Staged entries: the file holding the stored tensors, and their names in it.
    std::shared_ptr<const SafetensorsFile> staged;
    std::vector<std::string> staged_names;
  };
  // The tensors Write() stores for `e` (converted to `dtype`, packed in qc's layout).
  std::vector<std::pair<std::string, Tensor>> Stored(const Entry& e, const QuantConfig& qc) const;
  std::vector<Entry> entries_;
};

// The quantization settings of an AWQ folder (ours or AutoAWQ's): config.json's
// "quantization_config" (quant_method "awq"), else quant_config.json. nullopt when the folder
// is not AWQ-quantized. Per-linear settings of our packed layout come back as overrides
// anchored on the module name. Throws awq::Error naming the file, key and value for malformed
// settings or a layout awq.cpp cannot read (gemv, gemv_fast, marlin, ...).
std::optional<QuantConfig> ReadAwqQuantConfig(const std::string& dir);

// Dequantizes <module>.qweight/.qzeros/.scales to an owned F32 [out, in] tensor, using the
// module's settings from `qc` (as ReadAwqQuantConfig returned it). Throws awq::Error naming the
// checkpoint and tensor for missing tensors, wrong dtypes or shapes.
Tensor DequantizeAwqWeight(const SafetensorsCheckpoint& ckpt, const std::string& module_name,
                           const QuantConfig& qc);
// The same as a QuantizedLinear (codes, scales, zeros), for kernels that consume codes.
QuantizedLinear ReadAwqLinear(const SafetensorsCheckpoint& ckpt, const std::string& module_name,
                              const QuantConfig& qc);

}  // namespace awq
