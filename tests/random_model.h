// Small random Hugging Face model folders for the fault, numerics and determinism tests: the
// committed tiny Qwen3's config and tokenizer with chosen depth and width, fp32 weights from a
// seeded generator, and a hook that edits a tensor before it is written.
#pragma once

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "awq/quantize.h"
#include "awq/safetensors.h"
#include "awq/tensor.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace awq::test {

// Called with each tensor's name and data before it is written.
using TensorEdit = std::function<void(const std::string& name, Tensor& t)>;

// A Qwen3-shaped model in `dir` (created): `layers` blocks of width `hidden` and MLP width
// `inter`, 4 heads, 2 KV heads. Files are world-readable, so a child process running as another
// user can read them.
inline std::string MakeRandomQwen3(const std::string& dir, int layers, int hidden, int inter,
                                   const TensorEdit& edit = nullptr) {
  namespace fs = std::filesystem;
  using nlohmann::json;
  fs::create_directories(dir);
  json cfg = json::parse(ReadFileToString(DataPath("tiny/qwen3/config.json")));
  const int heads = 4, kv = 2, hd = hidden / heads, vocab = cfg["vocab_size"].get<int>();
  cfg["hidden_size"] = hidden;
  cfg["intermediate_size"] = inter;
  cfg["head_dim"] = hd;
  cfg["num_attention_heads"] = heads;
  cfg["num_key_value_heads"] = kv;
  cfg["num_hidden_layers"] = layers;
  cfg["max_position_embeddings"] = 256;
  cfg["layer_types"] = std::vector<std::string>(static_cast<size_t>(layers), "full_attention");
  std::ofstream(dir + "/config.json") << cfg.dump(2);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(DataPath(std::string("tiny/qwen3/") + f), dir + "/" + f,
                  fs::copy_options::overwrite_existing);
  }
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  SafetensorsWriter w;
  const auto add = [&](const std::string& name, Shape shape, float base, float noise) {
    Tensor t(DType::kF32, shape);
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = base + noise * normal(rng);
    if (edit) edit(name, t);
    w.Add(name, std::move(t));
  };
  add("model.embed_tokens.weight", {vocab, hidden}, 0, 0.5f);
  add("model.norm.weight", {hidden}, 1, 0.05f);
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {hidden}, 1, 0.3f);
    add(p + "post_attention_layernorm.weight", {hidden}, 1, 0.3f);
    add(p + "self_attn.q_norm.weight", {hd}, 1, 0.05f);
    add(p + "self_attn.k_norm.weight", {hd}, 1, 0.05f);
    add(p + "self_attn.q_proj.weight", {heads * hd, hidden}, 0, 0.05f);
    add(p + "self_attn.k_proj.weight", {kv * hd, hidden}, 0, 0.05f);
    add(p + "self_attn.v_proj.weight", {kv * hd, hidden}, 0, 0.05f);
    add(p + "self_attn.o_proj.weight", {hidden, heads * hd}, 0, 0.05f);
    add(p + "mlp.gate_proj.weight", {inter, hidden}, 0, 0.05f);
    add(p + "mlp.up_proj.weight", {inter, hidden}, 0, 0.05f);
    add(p + "mlp.down_proj.weight", {hidden, inter}, 0, 0.05f);
  }
  w.WriteFile(dir + "/model.safetensors");
  for (const auto& e : fs::directory_iterator(dir)) {
    fs::permissions(e.path(), fs::perms::owner_read | fs::perms::owner_write |
                                  fs::perms::group_read | fs::perms::others_read);
  }
  return dir;
}

// `n` pre-tokenized calibration samples of `len` ids below the tiny vocabulary, seeded, as
// `awq quantize --calib-data` reads them (JSONL with "input_ids").
inline std::string WriteCalibrationIds(const std::string& dir, int n, int len) {
  std::mt19937 rng(7);
  std::ofstream f(dir + "/calib_ids.jsonl");
  for (int i = 0; i < n; ++i) {
    nlohmann::json ids = nlohmann::json::array();
    for (int t = 0; t < len; ++t) ids.push_back(static_cast<int>(rng() % 400));
    f << nlohmann::json{{"input_ids", ids}}.dump() << "\n";
  }
  return dir + "/calib_ids.jsonl";
}

// AWQ w4 g32 on 8 calibration samples of 64 tokens from `calib`: a search over these random
// models that lasts seconds.
inline QuantizeOptions RandomModelAwqOptions(const std::string& calib) {
  QuantizeOptions o;
  o.method = QuantMethod::kAwq;
  o.config.q_group_size = 32;
  o.config.max_calib_samples = 8;
  o.config.max_calib_seq_len = 64;
  o.calib_data = calib;
  return o;
}

}  // namespace awq::test
