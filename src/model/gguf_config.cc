// ModelConfig from GGUF metadata (<arch>.* keys, as llama.cpp's converter writes them).
#include <charconv>
#include <cstdlib>
#include <string>

#include "awq/gguf.h"
#include "awq/model_config.h"
#include "model/arch.h"

namespace awq {

namespace {
// GGUF stores these as float32; the shortest decimal that reads back as the same float (1e-06,
// not 9.99999997e-07) is what the model's config.json said, and what a written config.json
// should say again. The kernels use the float either way.
double ShortestFloat(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), static_cast<float>(v));
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}
}  // namespace

ModelConfig ConfigFromGguf(const GgufFile& gguf) {
  ModelConfig c;
  const std::string arch = gguf.GetString("general.architecture");
  const Architecture* family = FindGgufArchitecture(arch);
  if (family == nullptr) {
    throw Error(gguf.path() + ": general.architecture is '" + arch +
                "'; supported: " + SupportedGgufArchitectures());
  }
  const std::string p = arch + ".";
  c.model_type = family->model_type;
  c.architecture = family->hf_class;
  c.hidden_size = static_cast<int64_t>(gguf.GetUint(p + "embedding_length"));
  c.intermediate_size = static_cast<int64_t>(gguf.GetUint(p + "feed_forward_length"));
  c.num_hidden_layers = static_cast<int64_t>(gguf.GetUint(p + "block_count"));
  c.num_attention_heads = static_cast<int64_t>(gguf.GetUint(p + "attention.head_count"));
  c.num_key_value_heads = static_cast<int64_t>(
      gguf.GetUint(p + "attention.head_count_kv", static_cast<uint64_t>(c.num_attention_heads)));
  c.max_position_embeddings = static_cast<int64_t>(gguf.GetUint(p + "context_length", 2048));
  c.rms_norm_eps = ShortestFloat(gguf.GetFloat(p + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_theta = ShortestFloat(gguf.GetFloat(p + "rope.freq_base", 10000.0));
  if (c.num_attention_heads > 0) {
    c.head_dim = static_cast<int64_t>(gguf.GetUint(
        p + "attention.key_length", static_cast<uint64_t>(c.hidden_size / c.num_attention_heads)));
  }
  const std::string scaling = gguf.GetString(p + "rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope_scaling.type = RopeScalingType::kLinear;
    c.rope_scaling.factor = gguf.GetFloat(p + "rope.scaling.factor");
  } else if (scaling != "none") {
    throw Error(gguf.path() + ": metadata key " + p + "rope.scaling.type is '" + scaling +
                "'; supported: none, linear");
  }
  // Llama-3.1 GGUFs keep the llama3 scaling baked into a rope_freqs tensor rather than in keys.
  if (gguf.FindTensor("rope_freqs.weight") != nullptr) {
    throw Error(gguf.path() +
                ": tensor rope_freqs.weight (Llama-3.1 rope scaling in GGUF) is "
                "not supported; load the Hugging Face folder instead");
  }
  if (gguf.Has(p + "vocab_size")) {
    c.vocab_size = static_cast<int64_t>(gguf.GetUint(p + "vocab_size"));
  } else if (gguf.Has("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(gguf.Find("tokenizer.ggml.tokens")->array.size());
  }
  c.tie_word_embeddings = gguf.FindTensor("output.weight") == nullptr;
  c.attention_bias = gguf.FindTensor("blk.0.attn_q.bias") != nullptr;
  if (family->read_gguf != nullptr) family->read_gguf(gguf, p, c);
  c.rms_norm_eps = ShortestFloat(c.rms_norm_eps);
  c.bos_token_id = static_cast<int64_t>(gguf.GetInt("tokenizer.ggml.bos_token_id", -1));
  const int64_t eos = gguf.GetInt("tokenizer.ggml.eos_token_id", -1);
  if (eos >= 0) c.eos_token_ids.push_back(eos);
  c.Validate(gguf.path());
  return c;
}

}  // namespace awq
