// Quantization options: the AWQ search knobs, the bits/group of every linear (with per-layer
// overrides), presets, and the JSON override file. Plain structs with explicit defaults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace awq {

// The storage layouts a checkpoint can use (QuantConfig::version). "gemm" is AutoAWQ's GEMM
// layout, read by transformers, vLLM and ExLlama: 4-bit only and one bits/group_size for every
// linear. "awqcpp_packed" is ours (docs/LAYOUTS.md): 2..8 bits and per-linear bits/group sizes;
// only awq.cpp reads it.
inline constexpr const char* kLayoutGemm = "gemm";
inline constexpr const char* kLayoutPacked = "awqcpp_packed";
// AutoAWQ's WQLinear_GEMV layout (4-bit, rows = output channels): read and written.
inline constexpr const char* kLayoutGemv = "gemv";

// How one linear is quantized.
struct QuantParams {
  int bits = 4;
  int64_t group_size = 128;  // -1: one group per row
  bool zero_point = true;
};

// A per-layer exception to the global bits/group size. Later overrides win over earlier ones.
struct LayerOverride {
  // A PCRE2 regex searched in the Hugging Face module name, e.g.
  // "model.layers.0.mlp.down_proj"; "down_proj$" matches every down projection.
  std::string pattern;
  std::optional<int> bits;
  std::optional<int64_t> group_size;
  bool skip = false;  // leave this linear in full precision
};

struct QuantConfig {
  // Quantizer.
  int w_bit = 4;
  int64_t q_group_size = 128;  // -1 or a positive multiple of 8
  bool zero_point = true;
  std::string version = kLayoutGemm;  // storage layout, see kLayoutGemm / kLayoutPacked
  // Scale search (AWQ.md section 2).
  bool duo_scaling = true;
  // Clip search (AWQ.md section 3).
  bool apply_clip = true;
  int n_grid = 20;
  double max_shrink = 0.5;
  int64_t n_sample_token = 512;
  // Calibration (AWQ.md section 1).
  int64_t max_calib_samples = 128;
  int64_t max_calib_seq_len = 512;
  // Substrings of module names left in full precision (AutoAWQ semantics: a module is skipped
  // when any entry occurs in its name). lm_head and the embeddings are never quantized anyway.
  std::vector<std::string> modules_to_not_convert;
  std::vector<LayerOverride> overrides;

  // Throws awq::Error naming the option and its value: w_bit outside 2..8, a group size that is
  // neither -1 nor a positive multiple of 8, n_grid <= 0, max_shrink outside [0, 1),
  // non-positive sample counts, an unknown version, an invalid override pattern or value, or a
  // "gemm" layout asked to hold anything but one uniform 4-bit setting.
  void Validate() const;

  // The parameters of one linear, overrides applied in order (the last match wins); nullopt when
  // the linear stays in full precision (skipped by an override, listed in
  // modules_to_not_convert, or an lm_head / embedding).
  std::optional<QuantParams> ParamsFor(const std::string& module_name) const;

  // The global parameters (w_bit, q_group_size, zero_point).
  QuantParams DefaultParams() const { return {w_bit, q_group_size, zero_point}; }
};

// The names QuantPreset accepts, in the order docs/QUANT_CONFIG.md lists them.
std::vector<std::string> QuantPresetNames();
// "default" (w4 g128, zero point, GEMM layout: what AutoAWQ ships), "conservative" (w4 g64: more
// accurate, still GEMM) or "aggressive" (w3 g128, our packed layout). Unknown names throw
// awq::Error listing the valid ones.
QuantConfig QuantPreset(const std::string& name);

// Applies a JSON override file to *config (see docs/QUANT_CONFIG.md):
//   {"overrides": [{"pattern": "down_proj", "bits": 8, "group_size": 64, "skip": false}],
//    "w_bit": 4, "q_group_size": 128, "zero_point": true, "version": "gemm", ...}
// Top-level keys replace the config's values; overrides are appended after the existing ones.
// The result is validated; on any error *config is left unchanged and the awq::Error names the
// file, the key and the value.
void LoadQuantOverrides(const std::string& json_path, QuantConfig* config);
// Same from the text of such a file; `source` names it in errors.
void ParseQuantOverrides(const std::string& json_text, const std::string& source,
                         QuantConfig* config);

}  // namespace awq
