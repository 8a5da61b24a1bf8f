// QuantConfig validation, per-linear parameter resolution, presets and the JSON override file.
#include "awq/quant_config.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "awq/error.h"
#include "core/mapped_file.h"

namespace awq {

namespace {

using nlohmann::json;

// Override patterns are PCRE2 regexes (Perl syntax; ECMAScript's module-name patterns mean the
// same). A hostile file cannot make a match run for ever: the pattern length is bounded, nested
// quantifiers such as "a**" do not compile, and a match that backtracks past kMatchLimit steps
// (as "(a*)*b" can on a long name) is an error naming the pattern instead of a hang. Module
// names are under 100 characters; real patterns match them in a few hundred steps.
constexpr size_t kMaxPatternLength = 256;
constexpr uint32_t kMatchLimit = 100000;

std::string PcreMessage(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

struct PcreCodeFree {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
using PcreCode = std::unique_ptr<pcre2_code, PcreCodeFree>;

PcreCode CompilePattern(const std::string& pattern, const std::string& where) {
  if (pattern.empty()) throw Error(where + ": pattern is empty (it would match every module)");
  if (pattern.size() > kMaxPatternLength) {
    throw Error(where + ": pattern is " + std::to_string(pattern.size()) +
                " characters long, more than the limit of " + std::to_string(kMaxPatternLength));
  }
  int err = 0;
  PCRE2_SIZE offset = 0;
  PcreCode code(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0, &err,
                              &offset, nullptr));
  if (!code) {
    throw Error(where + ": pattern '" + pattern + "' is not a valid regex at offset " +
                std::to_string(offset) + ": " + PcreMessage(err));
  }
  return code;
}

// ParamsFor runs for every linear against every override (a read-back config has one override
// per linear that differs), so compiled patterns are kept per thread.
const pcre2_code* CachedPattern(const std::string& pattern, const std::string& where) {
  constexpr size_t kMaxCached = 4096;
  thread_local std::unordered_map<std::string, PcreCode> cache;
  auto it = cache.find(pattern);
  if (it != cache.end()) return it->second.get();
  if (cache.size() >= kMaxCached) cache.clear();
  return cache.emplace(pattern, CompilePattern(pattern, where)).first->second.get();
}

// regex_search: whether `pattern` matches anywhere in `name`.
bool PatternFinds(const std::string& pattern, const std::string& name, const std::string& where) {
  const pcre2_code* code = CachedPattern(pattern, where);
  struct Match {
    pcre2_match_data* data;
    pcre2_match_context* context;
    ~Match() {
      pcre2_match_data_free(data);
      pcre2_match_context_free(context);
    }
  } m{pcre2_match_data_create_from_pattern(code, nullptr), pcre2_match_context_create(nullptr)};
  AWQ_CHECK(m.data != nullptr && m.context != nullptr);
  pcre2_set_match_limit(m.context, kMatchLimit);
  pcre2_set_depth_limit(m.context, kMatchLimit);
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(name.data()), name.size(), 0, 0,
                             m.data, m.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    throw Error(where + ": pattern '" + pattern + "' failed on module " + name + ": " +
                PcreMessage(rc) + " (a pattern that backtracks this much needs simplifying)");
  }
  return true;
}

void ValidateBits(int bits, const std::string& where) {
  if (bits < 2 || bits > 8) {
    throw Error(where + " = " + std::to_string(bits) + ": bits must be between 2 and 8");
  }
}

// -1 (one group per row) or a positive multiple of 8: every packed layout puts 8 codes (or a
// multiple of 8 bits) per unit along some axis, and the kernels in transformers/vLLM use
// 32/64/128. Other multiples of 8 (16, 96, ...) are accepted for experiments.
void ValidateGroupSize(int64_t group, const std::string& where) {
  if (group == -1) return;
  if (group <= 0 || group % 8 != 0) {
    throw Error(where + " = " + std::to_string(group) +
                ": group size must be -1 (one group per row) or a positive multiple of 8 "
                "(32, 64, 128 are what other AWQ readers support)");
  }
}

// The last path component of a module name: "model.layers.0.mlp.down_proj" -> "down_proj".
std::string LastComponent(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

// Modules no AWQ implementation quantizes: the output head (quantizing it costs accuracy in
// every report) and the embedding tables (a lookup, not a matmul).
bool NeverQuantized(const std::string& module_name) {
  const std::string last = LastComponent(module_name);
  return last == "lm_head" || last == "embed_tokens" || last == "embed_in" || last == "embed_out" ||
         last == "wte" || last == "wpe";
}

std::string Describe(const json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

int64_t GetInt(const json& v, const std::string& where) {
  if (!v.is_number_integer()) throw Error(where + ": expected an integer, got " + Describe(v));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    throw Error(where + ": integer " + Describe(v) + " is out of range");
  }
  return v.get<int64_t>();
}

int GetSmallInt(const json& v, const std::string& where) {
  const int64_t x = GetInt(v, where);
  if (x < -1000000 || x > 1000000) throw Error(where + ": value " + Describe(v) + " out of range");
  return static_cast<int>(x);
}

bool GetBool(const json& v, const std::string& where) {
  if (!v.is_boolean()) throw Error(where + ": expected true or false, got " + Describe(v));
  return v.get<bool>();
}

double GetDouble(const json& v, const std::string& where) {
  if (!v.is_number()) throw Error(where + ": expected a number, got " + Describe(v));
  return v.get<double>();
}

std::string GetString(const json& v, const std::string& where) {
  if (!v.is_string()) throw Error(where + ": expected a string, got " + Describe(v));
  return v.get<std::string>();
}

LayerOverride ParseOverride(const json& o, const std::string& where) {
  if (!o.is_object()) throw Error(where + ": expected an object, got " + Describe(o));
  LayerOverride out;
  bool has_pattern = false;
  for (const auto& [key, value] : o.items()) {
    const std::string at = where + "." + key;
    if (key == "pattern") {
      out.pattern = GetString(value, at);
      has_pattern = true;
    } else if (key == "bits" || key == "w_bit") {
      out.bits = GetSmallInt(value, at);
    } else if (key == "group_size" || key == "q_group_size") {
      out.group_size = GetInt(value, at);
    } else if (key == "skip") {
      out.skip = GetBool(value, at);
    } else {
      throw Error(at + ": unknown key (expected pattern, bits, group_size, skip)");
    }
  }
  if (!has_pattern) throw Error(where + ": missing key \"pattern\"");
  return out;
}

}  // namespace

void QuantConfig::Validate() const {
  ValidateBits(w_bit, "w_bit");
  ValidateGroupSize(q_group_size, "q_group_size");
  if (version != kLayoutGemm && version != kLayoutGemv && version != kLayoutPacked) {
    throw Error("version = '" + version + "': unknown layout (expected '" + kLayoutGemm + "', '" +
                kLayoutGemv + "' or '" + kLayoutPacked + "')");
  }
  if (n_grid <= 0 || n_grid > 1000) {
    throw Error("n_grid = " + std::to_string(n_grid) + ": must be between 1 and 1000");
  }
  if (!(max_shrink >= 0.0 && max_shrink < 1.0)) {
    throw Error("max_shrink = " + std::to_string(max_shrink) + ": must be in [0, 1)");
  }
  if (n_sample_token <= 0) {
    throw Error("n_sample_token = " + std::to_string(n_sample_token) + ": must be positive");
  }
  if (max_calib_samples <= 0) {
    throw Error("max_calib_samples = " + std::to_string(max_calib_samples) + ": must be positive");
  }
  if (max_calib_seq_len <= 0) {
    throw Error("max_calib_seq_len = " + std::to_string(max_calib_seq_len) + ": must be positive");
  }
  for (const std::string& m : modules_to_not_convert) {
    if (m.empty()) throw Error("modules_to_not_convert: an empty entry would skip every module");
  }
  // The GEMV layout has the same one-setting-for-all-linears rule as GEMM.
  const bool gemm = version == kLayoutGemm || version == kLayoutGemv;
  // GEMM readers (transformers, vLLM) build every linear from the one bits/group_size in
  // config.json, so the GEMM layout can only hold a uniform 4-bit model.
  if (gemm && w_bit != 4) {
    throw Error("w_bit = " + std::to_string(w_bit) + ": version 'gemm' stores 4-bit codes only; " +
                "use version '" + kLayoutPacked + "' for other widths");
  }
  for (size_t i = 0; i < overrides.size(); ++i) {
    const LayerOverride& o = overrides[i];
    const std::string where = "overrides[" + std::to_string(i) + "]";
    CompilePattern(o.pattern, where + ".pattern");
    if (o.bits) {
      ValidateBits(*o.bits, where + ".bits");
      if (gemm && *o.bits != w_bit && !o.skip) {
        throw Error(where + ".bits = " + std::to_string(*o.bits) +
                    ": version 'gemm' holds one bit width for every linear; use version '" +
                    kLayoutPacked + "' for per-layer bits");
      }
    }
    if (o.group_size) {
      ValidateGroupSize(*o.group_size, where + ".group_size");
      if (gemm && *o.group_size != q_group_size && !o.skip) {
        throw Error(where + ".group_size = " + std::to_string(*o.group_size) +
                    ": version 'gemm' holds one group size for every linear; use version '" +
                    kLayoutPacked + "' for per-layer group sizes");
      }
    }
  }
}

std::optional<QuantParams> QuantConfig::ParamsFor(const std::string& module_name) const {
  if (NeverQuantized(module_name)) return std::nullopt;
  for (const std::string& m : modules_to_not_convert) {
    if (module_name.find(m) != std::string::npos) return std::nullopt;
  }
  QuantParams p = DefaultParams();
  bool skip = false;
  for (size_t i = 0; i < overrides.size(); ++i) {
    const LayerOverride& o = overrides[i];
    if (!PatternFinds(o.pattern, module_name, "overrides[" + std::to_string(i) + "]")) continue;
    // Each field takes the value of the last matching override that sets it; skip is always
    // set, so the last match decides it.
    if (o.bits) p.bits = *o.bits;
    if (o.group_size) p.group_size = *o.group_size;
    skip = o.skip;
  }
  if (skip) return std::nullopt;
  return p;
}

std::vector<std::string> QuantPresetNames() { return {"default", "conservative", "aggressive"}; }

QuantConfig QuantPreset(const std::string& name) {
  QuantConfig c;  // the defaults are AutoAWQ's: w4 g128 zero point, GEMM, duo scaling, clip
  if (name == "default") return c;
  if (name == "conservative") {
    // Twice the scales (0.25 extra bits per weight at fp16 scales + 4-bit zeros) for a smaller
    // error; still the GEMM layout every AWQ reader accepts.
    c.q_group_size = 64;
    return c;
  }
  if (name == "aggressive") {
    // 3-bit codes: about 3.25 bits per weight at g128; needs our packed layout.
    c.w_bit = 3;
    c.version = kLayoutPacked;
    return c;
  }
  std::string names;
  for (const std::string& n : QuantPresetNames()) names += (names.empty() ? "" : ", ") + n;
  throw Error("unknown quantization preset '" + name + "' (expected one of: " + names + ")");
}

void ParseQuantOverrides(const std::string& json_text, const std::string& source,
                         QuantConfig* config) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(source + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw Error(source + ": expected a JSON object at the top level");
  QuantConfig c = *config;
  for (const auto& [key, value] : root.items()) {
    const std::string at = source + ": " + key;
    if (key == "overrides") {
      if (!value.is_array()) throw Error(at + ": expected an array, got " + Describe(value));
      for (size_t i = 0; i < value.size(); ++i) {
        c.overrides.push_back(ParseOverride(value[i], at + "[" + std::to_string(i) + "]"));
      }
    } else if (key == "w_bit" || key == "bits") {
      c.w_bit = GetSmallInt(value, at);
    } else if (key == "q_group_size" || key == "group_size") {
      c.q_group_size = GetInt(value, at);
    } else if (key == "zero_point") {
      c.zero_point = GetBool(value, at);
    } else if (key == "version") {
      c.version = GetString(value, at);
      for (char& ch : c.version)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    } else if (key == "duo_scaling") {
      c.duo_scaling = GetBool(value, at);
    } else if (key == "apply_clip") {
      c.apply_clip = GetBool(value, at);
    } else if (key == "n_grid") {
      c.n_grid = GetSmallInt(value, at);
    } else if (key == "max_shrink") {
      c.max_shrink = GetDouble(value, at);
    } else if (key == "n_sample_token") {
      c.n_sample_token = GetInt(value, at);
    } else if (key == "max_calib_samples") {
      c.max_calib_samples = GetInt(value, at);
    } else if (key == "max_calib_seq_len") {
      c.max_calib_seq_len = GetInt(value, at);
    } else if (key == "modules_to_not_convert") {
      c.modules_to_not_convert.clear();
      if (!value.is_null()) {
        if (!value.is_array()) throw Error(at + ": expected an array of strings or null");
        for (size_t i = 0; i < value.size(); ++i) {
          c.modules_to_not_convert.push_back(
              GetString(value[i], at + "[" + std::to_string(i) + "]"));
        }
      }
    } else {
      throw Error(at +
                  ": unknown key (expected overrides, w_bit, q_group_size, zero_point, "
                  "version, duo_scaling, apply_clip, n_grid, max_shrink, n_sample_token, "
                  "max_calib_samples, max_calib_seq_len, modules_to_not_convert)");
    }
  }
  try {
    c.Validate();
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
  *config = std::move(c);
}

void LoadQuantOverrides(const std::string& json_path, QuantConfig* config) {
  ParseQuantOverrides(ReadFileToString(json_path), json_path, config);
}

}  // namespace awq
