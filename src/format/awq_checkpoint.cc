// AWQ checkpoint folders: the writer (safetensors shards, config.json with quantization_config,
// AutoAWQ's quant_config.json, generation and tokenizer files, renamed into place atomically)
// and the reader (quantization settings, dequantized weights).
#include "awq/awq_checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/half.h"
#include "awq/tokenizer.h"
#include "core/mapped_file.h"
#include "core/output_guard.h"

namespace awq {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

namespace {

// The key under "quantization_config" listing linears whose bits or group size differ from the
// global ones (packed layout only); transformers and vLLM ignore unknown keys there, and the
// "awqcpp_packed" version already makes them refuse the folder.
constexpr const char* kPerModuleKey = "awqcpp_modules";

std::string ToLower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string ToUpper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Escapes a module name so an override pattern matches it literally and only it.
std::string AnchoredPattern(const std::string& name) {
  std::string p = "^";
  for (char c : name) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) p += '\\';
    p += c;
  }
  return p + "$";
}

const char* TorchDtypeName(DType t) {
  switch (t) {
    case DType::kF16:
      return "float16";
    case DType::kBF16:
      return "bfloat16";
    case DType::kF32:
      return "float32";
    default:
      throw Error(std::string("AWQ checkpoint: unsupported dtype ") + DTypeName(t) +
                  " for full-precision tensors (expected F16, BF16 or F32)");
  }
}

// `t` in the writer's float dtype; integer tensors and tensors already in it pass through.
Tensor ConvertFloat(const std::string& name, const Tensor& t, DType dtype) {
  const bool is_float =
      t.dtype() == DType::kF32 || t.dtype() == DType::kF16 || t.dtype() == DType::kBF16;
  if (!is_float || t.dtype() == dtype) return t;
  if (dtype == DType::kF32) return t.ToF32();
  // Element by element, with no fp32 copy of the whole tensor: a 152k-token vocabulary's
  // embedding is 2.2 GB in fp32.
  const auto value = [&t](int64_t i) {
    switch (t.dtype()) {
      case DType::kF16:
        return Fp16ToFp32(t.data<uint16_t>()[i]);
      case DType::kBF16:
        return Bf16ToFp32(t.data<uint16_t>()[i]);
      default:
        return t.data<float>()[i];
    }
  };
  Tensor out(dtype, t.shape());
  uint16_t* dst = out.data<uint16_t>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = value(i);
    if (dtype == DType::kF16) {
      dst[i] = Fp32ToFp16(v);
      if ((dst[i] & 0x7c00) == 0x7c00 && std::isfinite(v)) {
        throw Error(name + ": value " + std::to_string(v) + " at element " + std::to_string(i) +
                    " overflows float16; save with dtype bfloat16 or float32");
      }
    } else {
      dst[i] = Fp32ToBf16(v);
    }
  }
  return out;
}

// The params a module was quantized with, as the read-back config would resolve them.
bool SameParams(const QuantParams& a, const QuantParams& b, int64_t in) {
  const auto group = [in](int64_t g) { return g == -1 ? in : g; };
  return a.bits == b.bits && group(a.group_size) == group(b.group_size) &&
         a.zero_point == b.zero_point;
}

std::string ParamsText(const QuantParams& p) {
  return "bits " + std::to_string(p.bits) + ", group size " + std::to_string(p.group_size) +
         ", zero point " + (p.zero_point ? "on" : "off");
}

std::string DirNoTrailingSlash(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.string();
}

json ReadJsonFile(const std::string& path) {
  try {
    return json::parse(ReadFileToString(path));
  } catch (const json::exception& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
}

// Reads one integer/bool/string key of a quantization config object.
const json* Find(const json& obj, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    auto it = obj.find(k);
    if (it != obj.end()) return &*it;
  }
  return nullptr;
}

int64_t IntKey(const json& obj, std::initializer_list<const char*> keys, const std::string& file,
               std::optional<int64_t> fallback) {
  const json* v = Find(obj, keys);
  const std::string key = *keys.begin();
  if (v == nullptr || v->is_null()) {
    if (fallback) return *fallback;
    throw Error(file + ": quantization config has no \"" + key + "\"");
  }
  if (!v->is_number_integer()) {
    throw Error(file + ": quantization config \"" + key + "\" = " + v->dump() +
                " is not an integer");
  }
  return v->get<int64_t>();
}

// Parses config.json's quantization_config or quant_config.json (both key spellings).
QuantConfig ParseAwqSettings(const json& obj, const std::string& file) {
  if (!obj.is_object()) throw Error(file + ": quantization config is not a JSON object");
  QuantConfig qc;
  const int64_t bits = IntKey(obj, {"bits", "w_bit"}, file, std::nullopt);
  if (bits < 2 || bits > 8) {
    throw Error(file + ": quantization config \"bits\" = " + std::to_string(bits) +
                " is not supported (2..8)");
  }
  qc.w_bit = static_cast<int>(bits);
  qc.q_group_size = IntKey(obj, {"group_size", "q_group_size"}, file, std::nullopt);
  if (const json* v = Find(obj, {"zero_point"}); v != nullptr && !v->is_null()) {
    if (!v->is_boolean()) {
      throw Error(file + ": quantization config \"zero_point\" = " + v->dump() +
                  " is not true or false");
    }
    qc.zero_point = v->get<bool>();
  }
  if (const json* v = Find(obj, {"version"}); v != nullptr && !v->is_null()) {
    if (!v->is_string()) {
      throw Error(file + ": quantization config \"version\" = " + v->dump() + " is not a string");
    }
    qc.version = ToLower(v->get<std::string>());
  }
  if (qc.version != kLayoutGemm && qc.version != kLayoutGemv && qc.version != kLayoutPacked) {
    throw Error(file + ": AWQ layout \"version\" = \"" + qc.version +
                "\" is not supported (awq.cpp reads \"gemm\", \"gemv\" and \"awqcpp_packed\")");
  }
  if (const json* v = Find(obj, {"modules_to_not_convert"}); v != nullptr && !v->is_null()) {
    if (!v->is_array()) {
      throw Error(file + ": quantization config \"modules_to_not_convert\" = " + v->dump() +
                  " is not a list");
    }
    for (const json& m : *v) {
      if (!m.is_string() || m.get<std::string>().empty()) {
        throw Error(file + ": quantization config \"modules_to_not_convert\" entry " + m.dump() +
                    " is not a non-empty string");
      }
      qc.modules_to_not_convert.push_back(m.get<std::string>());
    }
  }
  if (const json* v = Find(obj, {kPerModuleKey}); v != nullptr && !v->is_null()) {
    if (!v->is_object()) {
      throw Error(file + ": quantization config \"" + kPerModuleKey + "\" is not an object");
    }
    for (const auto& [name, entry] : v->items()) {
      const std::string where = file + ": " + kPerModuleKey + "." + name;
      if (!entry.is_object()) throw Error(where + " is not an object");
      LayerOverride o;
      o.pattern = AnchoredPattern(name);
      o.bits = static_cast<int>(IntKey(entry, {"bits"}, where, std::nullopt));
      o.group_size = IntKey(entry, {"group_size"}, where, std::nullopt);
      qc.overrides.push_back(std::move(o));
    }
  }
  try {
    qc.Validate();
  } catch (const Error& e) {
    throw Error(file + ": quantization config: " + e.what());
  }
  return qc;
}

}  // namespace

void AwqCheckpointWriter::AddTensor(const std::string& hf_name, Tensor t) {
  Entry e;
  e.name = hf_name;
  e.ndim = static_cast<int>(t.ndim());
  e.tensor = std::move(t);
  entries_.push_back(std::move(e));
}

void AwqCheckpointWriter::AddQuantized(const std::string& module_name, const QuantizedLinear& q) {
  Entry e;
  e.name = module_name;
  e.quantized = true;
  e.params = q.params;
  e.out = q.out;
  e.in = q.in;
  e.gemm = q.params.bits == 4 && q.out % 8 == 0;
  try {
    if (e.gemm) {
      AwqGemmTensors t = PackAwqGemm(q);
      e.qweight = std::move(t.qweight);
      e.qzeros = std::move(t.qzeros);
      e.scales = std::move(t.scales);
    } else {
      AwqPackedTensors t = PackAwqPacked(q);
      e.qweight = std::move(t.qweight);
      e.qzeros = std::move(t.qzeros);
      e.scales = std::move(t.scales);
    }
  } catch (const Error& err) {
    throw Error(module_name + ": " + err.what());
  }
  entries_.push_back(std::move(e));
}

std::vector<std::pair<std::string, Tensor>> AwqCheckpointWriter::Stored(
    const Entry& e, const QuantConfig& qc) const {
  if (!e.quantized) return {{e.name, ConvertFloat(e.name, e.tensor, dtype)}};
  const bool gemv = qc.version == kLayoutGemv;
  const bool gemm = qc.version == kLayoutGemm || gemv;
  Tensor qweight = e.qweight, qzeros = e.qzeros, scales = e.scales;
  try {
    if (gemv) {
      const QuantizedLinear q =
          e.gemm ? UnpackAwqGemm(qweight, qzeros, scales, e.params.bits, e.params.group_size,
                                 e.name, e.params.zero_point)
                 : UnpackAwqPacked(qweight, qzeros, scales, e.params.bits, e.params.group_size,
                                   e.name, e.params.zero_point);
      AwqGemvTensors t = PackAwqGemv(q);
      qweight = t.qweight, qzeros = t.qzeros, scales = t.scales;
    } else if (gemm && !e.gemm) {
      AwqGemmTensors t =
          PackAwqGemm(UnpackAwqPacked(qweight, qzeros, scales, e.params.bits, e.params.group_size,
                                      e.name, e.params.zero_point));
      qweight = t.qweight, qzeros = t.qzeros, scales = t.scales;
    } else if (!gemm && e.gemm) {
      AwqPackedTensors t =
          PackAwqPacked(UnpackAwqGemm(qweight, qzeros, scales, e.params.bits, e.params.group_size,
                                      e.name, e.params.zero_point));
      qweight = t.qweight, qzeros = t.qzeros, scales = t.scales;
    }
  } catch (const Error& err) {
    throw Error(e.name + ": " + err.what());
  }
  return {
      {e.name + ".qweight", qweight}, {e.name + ".qzeros", qzeros}, {e.name + ".scales", scales}};
}

std::vector<std::pair<std::string, Tensor>> AwqCheckpointWriter::StoredTensors(
    const QuantConfig& qc) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const Entry& e : entries_) {
    if (e.staged) throw Error(e.name + ": a staged entry has no tensors in memory");
    for (auto& nt : Stored(e, qc)) out.push_back(std::move(nt));
  }
  return out;
}

namespace {
const SafetensorsTensorInfo& StagedInfo(const SafetensorsFile& f, const std::string& name) {
  const SafetensorsTensorInfo* info = f.Find(name);
  if (info == nullptr) throw Error(f.source() + ": staged tensor " + name + " is missing");
  return *info;
}
}  // namespace

void AwqCheckpointWriter::AddStaged(const std::string& hf_name,
                                    std::shared_ptr<const SafetensorsFile> file) {
  Entry e;
  e.name = hf_name;
  e.ndim = static_cast<int>(StagedInfo(*file, hf_name).shape.size());
  e.staged_names = {hf_name};
  e.staged = std::move(file);
  entries_.push_back(std::move(e));
}

void AwqCheckpointWriter::AddStagedQuantized(const std::string& module_name,
                                             const QuantParams& params, int64_t out, int64_t in,
                                             std::shared_ptr<const SafetensorsFile> file) {
  Entry e;
  e.name = module_name;
  e.quantized = true;
  e.params = params;
  e.out = out;
  e.in = in;
  for (const char* suffix : {".qweight", ".qzeros", ".scales"}) {
    StagedInfo(*file, module_name + suffix);
    e.staged_names.push_back(module_name + suffix);
  }
  e.staged = std::move(file);
  entries_.push_back(std::move(e));
}

void AwqCheckpointWriter::Write(const std::string& dir_in, const std::string& config_json,
                                const QuantConfig& qc, const Tokenizer* tokenizer,
                                uint64_t max_shard_bytes, bool overwrite) const {
  const std::string dir = DirNoTrailingSlash(dir_in);
  const OutputLock lock(dir);
  qc.Validate();
  const char* torch_dtype = TorchDtypeName(dtype);
  std::error_code ec;
  const auto check_target = [&] {
    if (!fs::exists(dir, ec)) return;
    if (!fs::is_directory(dir, ec)) throw Error(dir + ": exists and is not a folder");
    if (!overwrite) throw Error(dir + ": folder exists (pass overwrite to replace it)");
  };
  check_target();  // fail before any work; checked again before the rename

  const bool gemv = qc.version == kLayoutGemv;
  const bool gemm = qc.version == kLayoutGemm || gemv;  // one uniform 4-bit setting
  // What a reader will resolve every module to: the global settings, plus anchored overrides for
  // the linears that differ (packed layout only).
  QuantConfig readback;
  readback.w_bit = qc.w_bit;
  readback.q_group_size = qc.q_group_size;
  readback.zero_point = qc.zero_point;
  readback.version = qc.version;
  readback.modules_to_not_convert = qc.modules_to_not_convert;
  json per_module = json::object();
  std::set<std::string> seen;
  for (const Entry& e : entries_) {
    if (!e.quantized) continue;
    if (!seen.insert(e.name).second) throw Error(e.name + ": quantized linear added twice");
    if (e.params.zero_point != qc.zero_point) {
      throw Error(e.name + ": quantized with " + ParamsText(e.params) +
                  ", but the checkpoint's quantization config has zero point " +
                  (qc.zero_point ? "on" : "off") + " for every linear");
    }
    if (SameParams(e.params, qc.DefaultParams(), e.in)) continue;
    if (gemm) {
      throw Error(e.name + ": quantized with " + ParamsText(e.params) + ", which the '" +
                  qc.version + "' layout cannot hold (it stores every linear at the config's " +
                  ParamsText(qc.DefaultParams()) + "); use version 'awqcpp_packed'");
    }
    per_module[e.name] = {{"bits", e.params.bits}, {"group_size", e.params.group_size}};
    LayerOverride o;
    o.pattern = AnchoredPattern(e.name);
    o.bits = e.params.bits;
    o.group_size = e.params.group_size;
    readback.overrides.push_back(std::move(o));
  }

  // Linears left in full precision must be named in modules_to_not_convert, or transformers
  // would replace them with empty quantized layers and ignore their weights.
  std::vector<std::string> not_convert = qc.modules_to_not_convert;
  const std::string suffix = ".weight";
  for (const Entry& e : entries_) {
    if (e.quantized || e.ndim != 2 || e.name.size() <= suffix.size() ||
        e.name.compare(e.name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    const std::string module = e.name.substr(0, e.name.size() - suffix.size());
    if (seen.count(module) != 0) throw Error(module + ": added both quantized and as " + e.name);
    if (readback.ParamsFor(module)) {
      not_convert.push_back(module);
      readback.modules_to_not_convert.push_back(module);
    }
  }
  // Every quantized linear must read back with the settings it was quantized with.
  for (const Entry& e : entries_) {
    if (!e.quantized) continue;
    const std::optional<QuantParams> p = readback.ParamsFor(e.name);
    if (!p || !SameParams(*p, e.params, e.in)) {
      throw Error(e.name + ": a reader would not treat this linear as quantized with " +
                  ParamsText(e.params) +
                  " (lm_head and embeddings, and names matching modules_to_not_convert, are "
                  "read as full precision)");
    }
  }

  SafetensorsWriter st;
  for (const Entry& e : entries_) {
    if (e.staged) {
      for (const std::string& name : e.staged_names) {
        const SafetensorsTensorInfo* info = e.staged->Find(name);
        st.AddFromFile(name, info->dtype, info->shape, e.staged->source(),
                       e.staged->data_offset() + info->begin);
      }
      continue;
    }
    for (auto& [name, t] : Stored(e, qc)) st.Add(name, std::move(t));
  }

  // config.json: transformers' keys sorted; AutoAWQ's to_transformers_dict() as
  // quantization_config.
  json cfg = json::parse(config_json);
  // transformers 5 spells it "dtype"; keep whichever the model's config uses.
  cfg[cfg.contains("dtype") ? "dtype" : "torch_dtype"] = torch_dtype;
  json quant = {{"bits", qc.w_bit},
                {"group_size", qc.q_group_size},
                {"modules_to_not_convert", not_convert.empty() ? json(nullptr) : json(not_convert)},
                {"quant_method", "awq"},
                {"version", qc.version},
                {"zero_point", qc.zero_point}};
  if (!per_module.empty()) quant[kPerModuleKey] = per_module;
  cfg["quantization_config"] = quant;
  const std::string config_text = cfg.dump(2) + "\n";
  // quant_config.json: AutoAWQ's legacy file, keys in its to_dict() order, version upper-case.
  ordered_json legacy;
  legacy["zero_point"] = qc.zero_point;
  legacy["q_group_size"] = qc.q_group_size;
  legacy["w_bit"] = qc.w_bit;
  legacy["version"] = ToUpper(qc.version);
  legacy["modules_to_not_convert"] = not_convert.empty() ? json(nullptr) : json(not_convert);
  if (!method.empty()) legacy["awqcpp_method"] = method;
  const std::string legacy_text = legacy.dump(2) + "\n";
  json gen = json::object();
  for (const char* key : {"bos_token_id", "eos_token_id"}) {
    if (cfg.contains(key) && !cfg.at(key).is_null()) gen[key] = cfg.at(key);
  }
  const std::string gen_text = gen.dump(2) + "\n";

  const std::string tmp = dir + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);  // a leftover of a crashed run with the same pid
  try {
    fs::create_directories(tmp, ec);
    if (ec) throw Error(tmp + ": cannot create folder: " + ec.message());
    st.WriteSharded(tmp, max_shard_bytes);
    WriteFileAtomic(tmp + "/config.json", config_text.data(), config_text.size());
    WriteFileAtomic(tmp + "/quant_config.json", legacy_text.data(), legacy_text.size());
    WriteFileAtomic(tmp + "/generation_config.json", gen_text.data(), gen_text.size());
    if (tokenizer != nullptr) WriteHfTokenizerFiles(*tokenizer, tmp);

    check_target();
    if (fs::exists(dir, ec)) {
      // Move the old folder aside first so that `dir` always names a complete checkpoint
      // (the old one, then the new one); only the moment between the two renames has none.
      const std::string old = dir + ".old-" + std::to_string(::getpid());
      fs::remove_all(old, ec);
      fs::rename(dir, old, ec);
      if (ec) throw Error(dir + ": cannot move the old folder aside: " + ec.message());
      fs::rename(tmp, dir, ec);
      if (ec) {
        const std::string why = ec.message();
        fs::rename(old, dir, ec);
        throw Error(dir + ": cannot rename " + tmp + " into place: " + why);
      }
      fs::remove_all(old, ec);
    } else {
      fs::rename(tmp, dir, ec);
      if (ec) throw Error(dir + ": cannot rename " + tmp + " into place: " + ec.message());
    }
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

std::optional<QuantConfig> ReadAwqQuantConfig(const std::string& dir) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  std::error_code ec;
  if (fs::exists(config_path, ec)) {
    const json cfg = ReadJsonFile(config_path);
    if (cfg.is_object()) {
      auto it = cfg.find("quantization_config");
      if (it != cfg.end() && !it->is_null()) {
        if (!it->is_object()) throw Error(config_path + ": quantization_config is not an object");
        auto method = it->find("quant_method");
        if (method != it->end()) {
          if (!method->is_string()) {
            throw Error(config_path + ": quantization_config.quant_method = " + method->dump() +
                        " is not a string");
          }
          if (ToLower(method->get<std::string>()) != "awq") return std::nullopt;  // gptq, ...
        }
        return ParseAwqSettings(*it, config_path);
      }
    }
  }
  const std::string legacy_path = (fs::path(dir) / "quant_config.json").string();
  if (fs::exists(legacy_path, ec)) return ParseAwqSettings(ReadJsonFile(legacy_path), legacy_path);
  return std::nullopt;
}

QuantizedLinear ReadAwqLinear(const SafetensorsCheckpoint& ckpt, const std::string& module_name,
                              const QuantConfig& qc) {
  const std::string where = ckpt.source() + ": " + module_name;
  const std::optional<QuantParams> p = qc.ParamsFor(module_name);
  if (!p) {
    throw Error(where +
                ": the quantization config leaves this module in full precision "
                "(modules_to_not_convert), yet it was asked for as quantized");
  }
  for (const char* t : {".qweight", ".qzeros", ".scales"}) {
    if (!ckpt.Has(module_name + t)) {
      throw Error(ckpt.source() + ": missing tensor " + module_name + t + " of quantized linear " +
                  module_name);
    }
  }
  const Tensor qweight = ckpt.Get(module_name + ".qweight");
  const Tensor qzeros = ckpt.Get(module_name + ".qzeros");
  const Tensor scales = ckpt.Get(module_name + ".scales");
  if (qc.version == kLayoutGemm) {
    return UnpackAwqGemm(qweight, qzeros, scales, p->bits, p->group_size, where, p->zero_point);
  }
  if (qc.version == kLayoutPacked) {
    return UnpackAwqPacked(qweight, qzeros, scales, p->bits, p->group_size, where, p->zero_point);
  }
  if (qc.version == kLayoutGemv) {
    return UnpackAwqGemv(qweight, qzeros, scales, p->bits, p->group_size, where, p->zero_point);
  }
  throw Error(where + ": AWQ layout '" + qc.version + "' is not supported");
}

Tensor DequantizeAwqWeight(const SafetensorsCheckpoint& ckpt, const std::string& module_name,
                           const QuantConfig& qc) {
  const QuantizedLinear q = ReadAwqLinear(ckpt, module_name, qc);
  Tensor w(DType::kF32, {q.out, q.in});
  DequantizeLinear(q, w.data<float>());
  return w;
}

}  // namespace awq
