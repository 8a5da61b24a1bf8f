// Hugging Face config.json: the keys every family shares, parsed with the defaults transformers
// applies, then the family's own keys through its description (model/arch.h); validation, and
// writing it back the way transformers does.
#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "awq/error.h"
#include "awq/model_config.h"
#include "core/mapped_file.h"
#include "model/arch.h"

namespace awq {

namespace {

using nlohmann::json;

bool IsValidRope(RopeScalingType t) {
  return static_cast<uint8_t>(t) < static_cast<uint8_t>(RopeScalingType::kCount);
}

const char* const kTorchDtypes[] = {"float32", "float16", "bfloat16"};

std::string Show(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Typed access to config keys; every error names the file, the key and the value found.
class ConfigReader {
 public:
  ConfigReader(const json& root, const std::string& source) : root_(root), source_(source) {}

  [[noreturn]] void Fail(const std::string& key, const std::string& detail) const {
    throw Error(source_ + ": " + key + ": " + detail);
  }

  // Present and not null.
  bool Has(const json& obj, const std::string& key) const {
    const auto it = obj.find(key);
    return it != obj.end() && !it->is_null();
  }
  bool Has(const std::string& key) const { return Has(root_, key); }

  int64_t Int(const json& obj, const std::string& key, const std::string& path) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) Fail(path, "missing (required)");
    return IntValue(*it, path);
  }
  int64_t IntValue(const json& v, const std::string& path) const {
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        Fail(path, "value " + Show(v) + " is too large");
      }
      return static_cast<int64_t>(v.get<uint64_t>());
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    Fail(path, "expected an integer, got " + Show(v));
  }
  int64_t Int(const std::string& key) const { return Int(root_, key, key); }
  int64_t Int(const std::string& key, int64_t fallback) const {
    return Has(key) ? Int(key) : fallback;
  }

  double Number(const json& obj, const std::string& key, const std::string& path) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) Fail(path, "missing (required)");
    if (!it->is_number()) Fail(path, "expected a number, got " + Show(*it));
    return it->get<double>();
  }
  double Number(const std::string& key, double fallback) const {
    return Has(key) ? Number(root_, key, key) : fallback;
  }

  bool Bool(const std::string& key, bool fallback) const {
    if (!Has(key)) return fallback;
    const json& v = root_.at(key);
    if (!v.is_boolean()) Fail(key, "expected true or false, got " + Show(v));
    return v.get<bool>();
  }

  std::string String(const json& obj, const std::string& key, const std::string& path) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) Fail(path, "missing (required)");
    if (!it->is_string()) Fail(path, "expected a string, got " + Show(*it));
    return it->get<std::string>();
  }
  std::string String(const std::string& key, const std::string& fallback) const {
    return Has(key) ? String(root_, key, key) : fallback;
  }

  const json& root() const { return root_; }

 private:
  const json& root_;
  const std::string& source_;
};

// rope_scaling (transformers 4.x) or rope_parameters (5.x): {"rope_type" or legacy "type": ...}.
RopeScaling ParseRopeScaling(const ConfigReader& r, const json& obj, const std::string& key) {
  RopeScaling rs;
  if (!obj.is_object()) r.Fail(key, "expected an object or null, got " + Show(obj));
  std::string type;
  if (r.Has(obj, "rope_type")) {
    type = r.String(obj, "rope_type", key + ".rope_type");
  } else if (r.Has(obj, "type")) {
    type = r.String(obj, "type", key + ".type");
  } else {
    r.Fail(key + ".rope_type", "missing (required)");
  }
  if (type == "default") return rs;
  if (type == "linear") {
    rs.type = RopeScalingType::kLinear;
    rs.factor = r.Number(obj, "factor", key + ".factor");
  } else if (type == "llama3") {
    // transformers requires all four for llama3 and so do we: guessing them would silently change
    // every position's frequencies.
    rs.type = RopeScalingType::kLlama3;
    rs.factor = r.Number(obj, "factor", key + ".factor");
    rs.low_freq_factor = r.Number(obj, "low_freq_factor", key + ".low_freq_factor");
    rs.high_freq_factor = r.Number(obj, "high_freq_factor", key + ".high_freq_factor");
    rs.original_max_position_embeddings =
        r.Int(obj, "original_max_position_embeddings", key + ".original_max_position_embeddings");
  } else if (type == "yarn") {
    rs.type = RopeScalingType::kYarn;
    rs.factor = r.Number(obj, "factor", key + ".factor");
    if (r.Has(obj, "original_max_position_embeddings")) {
      rs.original_max_position_embeddings =
          r.Int(obj, "original_max_position_embeddings", key + ".original_max_position_embeddings");
    } else {
      rs.original_max_position_embeddings = -1;  // max_position_embeddings, set by the caller
    }
    if (r.Has(obj, "beta_fast")) rs.beta_fast = r.Number(obj, "beta_fast", key + ".beta_fast");
    if (r.Has(obj, "beta_slow")) rs.beta_slow = r.Number(obj, "beta_slow", key + ".beta_slow");
    if (r.Has(obj, "attention_factor")) {
      rs.attention_factor = r.Number(obj, "attention_factor", key + ".attention_factor");
    }
    if (r.Has(obj, "mscale") || r.Has(obj, "mscale_all_dim")) {
      r.Fail(key + ".mscale", "DeepSeek-style yarn mscale is not supported");
    }
    if (r.Has(obj, "truncate")) {
      if (!obj.at("truncate").is_boolean()) r.Fail(key + ".truncate", "expected true or false");
      rs.truncate = obj.at("truncate").get<bool>();
    }
  } else {
    r.Fail(key + ".rope_type",
           "unsupported value \"" + type + "\" (supported: default, linear, llama3, yarn)");
  }
  return rs;
}

}  // namespace

void ModelConfig::Validate(const std::string& source) const {
  const auto fail = [&](const std::string& key, const std::string& detail) {
    throw Error(source + ": " + key + ": " + detail);
  };
  const auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) fail(key, "must be positive, got " + std::to_string(v));
  };
  if (FindArchitecture(model_type) == nullptr) {
    fail("model_type",
         "unsupported value \"" + model_type + "\" (supported: " + SupportedModelTypes() + ")");
  }
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("max_position_embeddings", max_position_embeddings);
  // A recurrent family (Mamba, RWKV) has no attention: its own keys are checked as it reads them.
  const bool attention = FindArchitecture(model_type)->recurrent == nullptr;
  if (attention) {
    positive("num_attention_heads", num_attention_heads);
    positive("num_key_value_heads", num_key_value_heads);
    positive("head_dim", head_dim);
    if (num_attention_heads % num_key_value_heads != 0) {
      fail("num_key_value_heads", std::to_string(num_key_value_heads) +
                                      " does not divide num_attention_heads " +
                                      std::to_string(num_attention_heads));
    }
    // RoPE rotates pairs of channels.
    if (head_dim % 2 != 0) {
      fail("head_dim", "must be even for RoPE, got " + std::to_string(head_dim));
    }
  }
  if (!(rms_norm_eps > 0) || !std::isfinite(rms_norm_eps)) {
    fail("rms_norm_eps", "must be a positive number, got " + std::to_string(rms_norm_eps));
  }
  if (!(rope_theta > 0) || !std::isfinite(rope_theta)) {
    fail("rope_theta", "must be a positive number, got " + std::to_string(rope_theta));
  }
  if (!IsValidRope(rope_scaling.type)) fail("rope_scaling.rope_type", "invalid enum value");
  if (rope_scaling.type != RopeScalingType::kNone &&
      (!(rope_scaling.factor > 0) || !std::isfinite(rope_scaling.factor))) {
    fail("rope_scaling.factor",
         "must be a positive number, got " + std::to_string(rope_scaling.factor));
  }
  if (rope_scaling.type == RopeScalingType::kLlama3) {
    if (!(rope_scaling.low_freq_factor > 0) ||
        !(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor) ||
        !std::isfinite(rope_scaling.high_freq_factor)) {
      fail("rope_scaling.high_freq_factor", "needs 0 < low_freq_factor < high_freq_factor, got " +
                                                std::to_string(rope_scaling.low_freq_factor) +
                                                " and " +
                                                std::to_string(rope_scaling.high_freq_factor));
    }
    if (rope_scaling.original_max_position_embeddings <= 0) {
      fail(
          "rope_scaling.original_max_position_embeddings",
          "must be positive, got " + std::to_string(rope_scaling.original_max_position_embeddings));
    }
  }
  if (hidden_act != "silu" && hidden_act != "gelu_pytorch_tanh") {
    fail("hidden_act",
         "unsupported value \"" + hidden_act + "\" (supported: silu, gelu_pytorch_tanh)");
  }
  if (sliding_window < 0) {
    fail("sliding_window", "must be positive or absent, got " + std::to_string(sliding_window));
  }
  if (!layer_types.empty() && static_cast<int64_t>(layer_types.size()) != num_hidden_layers) {
    fail("layer_types", "lists " + std::to_string(layer_types.size()) + " layers but " +
                            "num_hidden_layers is " + std::to_string(num_hidden_layers));
  }
  if (attn_logit_softcapping > 0 || final_logit_softcapping > 0) {
    fail(attn_logit_softcapping > 0 ? "attn_logit_softcapping" : "final_logit_softcapping",
         "logit soft-capping (Gemma 2) is not supported");
  }
  if (num_experts > 0) {
    positive("moe_intermediate_size", moe_intermediate_size);
    if (num_experts_per_tok <= 0 || num_experts_per_tok > num_experts) {
      fail("num_experts_per_tok", "must be between 1 and the " + std::to_string(num_experts) +
                                      " experts, got " + std::to_string(num_experts_per_tok));
    }
    if (shared_expert_intermediate_size < 0) {
      fail("shared_expert_intermediate_size",
           "must be positive or absent, got " + std::to_string(shared_expert_intermediate_size));
    }
  }
  if (query_pre_attn_scalar < 0 || !std::isfinite(query_pre_attn_scalar)) {
    fail("query_pre_attn_scalar", "must be positive, got " + std::to_string(query_pre_attn_scalar));
  }
  if (bos_token_id < -1 || bos_token_id >= vocab_size) {
    fail("bos_token_id", std::to_string(bos_token_id) + " is outside the vocabulary of " +
                             std::to_string(vocab_size));
  }
  for (int64_t id : eos_token_ids) {
    if (id < 0 || id >= vocab_size) {
      fail("eos_token_id",
           std::to_string(id) + " is outside the vocabulary of " + std::to_string(vocab_size));
    }
  }
  bool dtype_ok = false;
  for (const char* d : kTorchDtypes) dtype_ok = dtype_ok || torch_dtype == d;
  if (!dtype_ok) {
    fail("torch_dtype",
         "unsupported value \"" + torch_dtype + "\" (supported: float32, float16, bfloat16)");
  }
}

ModelConfig ParseHfConfig(const std::string& json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) throw Error(source + ": expected a JSON object, got " + Show(root));
  const ConfigReader r(root, source);

  ModelConfig c;
  c.model_type = r.String(root, "model_type", "model_type");
  const Architecture* arch = FindArchitecture(c.model_type);
  if (arch == nullptr) {
    r.Fail("model_type",
           "unsupported value \"" + c.model_type + "\" (supported: " + SupportedModelTypes() + ")");
  }
  c.architecture = arch->hf_class;
  if (r.Has("architectures")) {
    const json& arch = root.at("architectures");
    if (!arch.is_array() || arch.empty() || !arch[0].is_string()) {
      r.Fail("architectures", "expected a list of class names, got " + Show(arch));
    }
    c.architecture = arch[0].get<std::string>();
  }
  if (arch->recurrent != nullptr) {
    // Mamba and RWKV configs hold no attention keys: the family reads every key it uses.
    arch->read_hf(root, source, c);
    c.source_json = json_text;
    c.Validate(source);
    return c;
  }

  c.vocab_size = r.Int("vocab_size");
  c.hidden_size = r.Int("hidden_size");
  c.intermediate_size = r.Int("intermediate_size");
  c.num_hidden_layers = r.Int("num_hidden_layers");
  c.num_attention_heads = r.Int("num_attention_heads");
  // transformers: no GQA when num_key_value_heads is absent.
  c.num_key_value_heads = r.Int("num_key_value_heads", c.num_attention_heads);
  if (r.Has("head_dim")) {
    c.head_dim = r.Int("head_dim");
  } else {
    if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0) {
      r.Fail("hidden_size", std::to_string(c.hidden_size) +
                                " is not divisible by num_attention_heads " +
                                std::to_string(c.num_attention_heads) + " and head_dim is absent");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  // Defaults below are those of LlamaConfig/MistralConfig/Qwen2Config for a missing key, except
  // max_position_embeddings, which differs per class and only bounds the context.
  c.max_position_embeddings = r.Int("max_position_embeddings", c.max_position_embeddings);
  c.rms_norm_eps = r.Number("rms_norm_eps", 1e-6);
  c.rope_theta = r.Number("rope_theta", 10000.0);
  if (r.Has("rope_scaling")) {
    c.rope_scaling = ParseRopeScaling(r, root.at("rope_scaling"), "rope_scaling");
  } else if (r.Has("rope_parameters")) {
    // transformers 5 folds rope_theta into rope_parameters, and for models with several layer
    // types (Gemma 3) keeps one entry per type: the full-attention layers' is the model's RoPE,
    // the sliding layers' base goes to rope_local_theta.
    const json& rp = root.at("rope_parameters");
    const bool per_type = rp.is_object() && rp.contains("full_attention");
    const json& global = per_type ? rp.at("full_attention") : rp;
    const std::string key = per_type ? "rope_parameters.full_attention" : "rope_parameters";
    c.rope_scaling = ParseRopeScaling(r, global, key);
    if (r.Has(global, "rope_theta"))
      c.rope_theta = r.Number(global, "rope_theta", key + ".rope_theta");
    if (per_type && rp.contains("sliding_attention")) {
      const json& local = rp.at("sliding_attention");
      const RopeScaling ls = ParseRopeScaling(r, local, "rope_parameters.sliding_attention");
      if (ls.type != RopeScalingType::kNone) {
        r.Fail("rope_parameters.sliding_attention.rope_type",
               "scaled RoPE on sliding-window layers is not supported");
      }
      if (r.Has(local, "rope_theta")) {
        c.rope_local_theta =
            r.Number(local, "rope_theta", "rope_parameters.sliding_attention.rope_theta");
      }
    }
  }
  c.tie_word_embeddings = r.Bool("tie_word_embeddings", false);
  c.attention_bias = r.Bool("attention_bias", false);
  c.mlp_bias = r.Bool("mlp_bias", false);
  c.hidden_act = r.String("hidden_act", "silu");
  c.bos_token_id = r.Int("bos_token_id", -1);
  if (r.Has("eos_token_id")) {
    const json& eos = root.at("eos_token_id");
    if (eos.is_array()) {
      for (size_t i = 0; i < eos.size(); ++i) {
        c.eos_token_ids.push_back(r.IntValue(eos[i], "eos_token_id[" + std::to_string(i) + "]"));
      }
    } else {
      c.eos_token_ids.push_back(r.Int("eos_token_id"));
    }
  }
  // transformers 5 renamed torch_dtype to dtype.
  c.torch_dtype = r.Has("torch_dtype") ? r.String("torch_dtype", "") : r.String("dtype", "float32");
  if (c.rope_scaling.type == RopeScalingType::kYarn &&
      c.rope_scaling.original_max_position_embeddings < 0) {
    c.rope_scaling.original_max_position_embeddings = c.max_position_embeddings;
  }
  arch_keys::ReadLayerTypes(root, source, c);
  if (arch->read_hf != nullptr) arch->read_hf(root, source, c);
  c.source_json = json_text;

  c.Validate(source);
  return c;
}

ModelConfig LoadHfConfig(const std::string& path) {
  std::error_code ec;
  const std::string file = std::filesystem::is_directory(path, ec)
                               ? (std::filesystem::path(path) / "config.json").string()
                               : path;
  return ParseHfConfig(ReadFileToString(file), file);
}

std::string HfConfigToJson(const ModelConfig& c) {
  // A config read from config.json goes back as it was: keys this project does not model
  // (token ids, vision settings, rope details) survive quantization.
  if (!c.source_json.empty()) {
    json j = json::parse(c.source_json);
    j.erase("quantization_config");
    return j.dump(2) + "\n";
  }
  json j;
  j["architectures"] = json::array({c.architecture});
  j["attention_bias"] = c.attention_bias;
  j["attention_dropout"] = 0.0;
  j["bos_token_id"] = c.bos_token_id >= 0 ? json(c.bos_token_id) : json(nullptr);
  if (c.eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else if (c.eos_token_ids.size() == 1) {
    j["eos_token_id"] = c.eos_token_ids[0];
  } else {
    j["eos_token_id"] = c.eos_token_ids;
  }
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = c.hidden_act;
  j["hidden_size"] = c.hidden_size;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = c.intermediate_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["mlp_bias"] = c.mlp_bias;
  j["model_type"] = c.model_type;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["pretraining_tp"] = 1;
  j["rms_norm_eps"] = c.rms_norm_eps;
  switch (c.rope_scaling.type) {
    case RopeScalingType::kLinear:
      j["rope_scaling"] = {{"factor", c.rope_scaling.factor}, {"rope_type", "linear"}};
      break;
    case RopeScalingType::kYarn:
      j["rope_scaling"] = {
          {"factor", c.rope_scaling.factor},
          {"beta_fast", c.rope_scaling.beta_fast},
          {"beta_slow", c.rope_scaling.beta_slow},
          {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings},
          {"rope_type", "yarn"}};
      break;
    case RopeScalingType::kLlama3:
      j["rope_scaling"] = {
          {"factor", c.rope_scaling.factor},
          {"high_freq_factor", c.rope_scaling.high_freq_factor},
          {"low_freq_factor", c.rope_scaling.low_freq_factor},
          {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings},
          {"rope_type", "llama3"}};
      break;
    default:
      j["rope_scaling"] = nullptr;
  }
  j["rope_theta"] = c.rope_theta;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = c.torch_dtype;
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  const Architecture& arch = ArchitectureOf(c);
  j["architectures"] = json::array({arch.hf_class});
  if (arch.write_hf != nullptr) arch.write_hf(c, j);
  // nlohmann's object is a std::map, so keys come out sorted, as json.dumps(sort_keys=True).
  return j.dump(2) + "\n";
}

}  // namespace awq
