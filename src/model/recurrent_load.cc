// Reading the recurrent families' configs and weights by their descriptions (src/model/arch/
// mamba.cc, rwkv.cc): shared config keys, tensor lists, state sizes.
#include <cstring>
#include <nlohmann/json.hpp>

#include "awq/error.h"
#include "awq/model.h"
#include "model/arch.h"
#include "model/recurrent.h"
#include "model/weight_source.h"

namespace awq {

namespace {

// The tensor, converted to fp32, with the shape the config implies.
Tensor FetchShaped(const WeightSource& src, const std::string& name, const Shape& expect) {
  if (!src.Has(name)) throw Error(src.path() + ": tensor " + name + " is missing");
  Tensor t = src.GetF32(name);
  if (t.shape() != expect) {
    throw Error(src.path() + ": tensor " + name + " has shape " + ShapeToString(t.shape()) +
                " but the config implies " + ShapeToString(expect));
  }
  return t;
}

}  // namespace

std::string RecurrentLayerPrefix(const RecurrentSpec& spec, int64_t layer) {
  return spec.layer_prefix + std::to_string(layer) + ".";
}

std::vector<std::string> RecurrentLinearNames(const RecurrentSpec& spec, int64_t layer) {
  std::vector<std::string> names;
  for (const RecurrentLinear& l : spec.linears) {
    names.push_back(RecurrentLayerPrefix(spec, layer) + l.name);
  }
  return names;
}

int64_t RecurrentStateFloats(const RecurrentSpec& spec, const ModelConfig& c) {
  switch (spec.kind) {
    case RecurrentKind::kMamba:
      return (c.conv_kernel - 1) * c.intermediate_size + c.intermediate_size * c.state_size;
    case RecurrentKind::kRwkv:
      return 2 * c.hidden_size + 3 * c.attention_hidden_size;
    case RecurrentKind::kCount:
      break;
  }
  AWQ_CHECK(false && "invalid recurrent kind");
  return 0;
}

int64_t RecurrentParameterCount(const RecurrentSpec& spec, const ModelConfig& c) {
  const int64_t d = c.hidden_size, v = c.vocab_size;
  int64_t n = v * d * (c.tie_word_embeddings ? 1 : 2) + d * (spec.final_norm_bias ? 2 : 1);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (const RecurrentTensor& t : spec.tensors(c, l)) n += NumElements(t.shape);
  }
  return n;
}

LayerWeights FetchRecurrentLayer(const WeightSource& src, const RecurrentSpec& spec, int64_t l) {
  const std::string p = RecurrentLayerPrefix(spec, l);
  LayerWeights lw;
  for (const RecurrentTensor& t : spec.tensors(src.config(), l)) {
    lw.recurrent.emplace(t.name, FetchShaped(src, p + t.name, t.shape));
  }
  return lw;
}

void FetchRecurrentWeights(const WeightSource& src, const RecurrentSpec& spec, ModelWeights& w) {
  const ModelConfig& c = src.config();
  const int64_t d = c.hidden_size, v = c.vocab_size;
  w.embed = FetchShaped(src, spec.embed, {v, d});
  w.final_norm = FetchShaped(src, std::string(spec.final_norm) + ".weight", {d});
  if (spec.final_norm_bias) {
    w.final_norm_bias = FetchShaped(src, std::string(spec.final_norm) + ".bias", {d});
  }
  if (src.Has(spec.lm_head)) {
    w.lm_head = FetchShaped(src, spec.lm_head, {v, d});
  } else if (c.tie_word_embeddings) {
    w.lm_head = w.embed;
  } else {
    throw Error(src.path() + ": tensor " + spec.lm_head +
                " is missing and tie_word_embeddings is false");
  }
  w.layers.clear();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    w.layers.push_back(FetchRecurrentLayer(src, spec, l));
  }
}

void ReadRecurrentCommon(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  const auto required = [&](const char* key) {
    if (!arch_keys::Has(root, key)) throw Error(source + ": " + key + ": missing (required)");
    return arch_keys::Int(root, source, key, 0);
  };
  c.vocab_size = required("vocab_size");
  c.hidden_size = required("hidden_size");
  c.num_hidden_layers = required("num_hidden_layers");
  // No attention: heads and head_dim stay 0 (Validate does not ask for them).
  c.num_attention_heads = c.num_key_value_heads = c.head_dim = 0;
  if (arch_keys::Has(root, "tie_word_embeddings")) {
    const nlohmann::json& t = root.at("tie_word_embeddings");
    if (!t.is_boolean()) {
      throw Error(source + ": tie_word_embeddings: expected true or false, got " + t.dump());
    }
    c.tie_word_embeddings = t.get<bool>();
  }
  c.bos_token_id = arch_keys::Int(root, source, "bos_token_id", -1);
  c.eos_token_ids.clear();
  if (arch_keys::Has(root, "eos_token_id")) {
    const nlohmann::json& eos = root.at("eos_token_id");
    if (eos.is_array()) {
      for (size_t i = 0; i < eos.size(); ++i) {
        if (!eos[i].is_number_integer()) {
          throw Error(source + ": eos_token_id[" + std::to_string(i) +
                      "]: expected an integer, got " + eos[i].dump());
        }
        c.eos_token_ids.push_back(eos[i].get<int64_t>());
      }
    } else {
      c.eos_token_ids.push_back(arch_keys::Int(root, source, "eos_token_id", 0));
    }
  }
  // transformers 5 writes dtype, older versions torch_dtype.
  const char* dtype_key = arch_keys::Has(root, "torch_dtype") ? "torch_dtype" : "dtype";
  if (arch_keys::Has(root, dtype_key)) {
    const nlohmann::json& t = root.at(dtype_key);
    if (!t.is_string()) {
      throw Error(source + ": " + dtype_key + ": expected a string, got " + t.dump());
    }
    c.torch_dtype = t.get<std::string>();
  }
}

}  // namespace awq
