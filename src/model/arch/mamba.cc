// Mamba v1 (transformers' MambaForCausalLM, state-spaces/mamba-*): RMSNorm pre-norm blocks of one
// selective state-space mixer each, no attention; the convolution and scan state replace the KV
// cache (src/model/recurrent.cc).
#include <cmath>

#include "awq/error.h"
#include "model/arch.h"
#include "model/recurrent.h"

namespace awq {

namespace {

void ReadMamba(const nlohmann::json& root, const std::string& source, ModelConfig& c) {
  const auto fail = [&](const char* key, const std::string& detail) {
    throw Error(source + ": " + key + ": " + detail);
  };
  ReadRecurrentCommon(root, source, c);
  // MambaConfig's defaults for a missing key.
  if (!arch_keys::Has(root, "tie_word_embeddings")) c.tie_word_embeddings = true;
  c.state_size = arch_keys::Int(root, source, "state_size", 16);
  c.conv_kernel = arch_keys::Int(root, source, "conv_kernel", 4);
  const double expand = arch_keys::Number(root, source, "expand", 2);
  if (!(expand > 0)) fail("expand", "must be positive, got " + root.at("expand").dump());
  // transformers sets intermediate_size = int(expand * hidden_size) whatever the file says.
  c.intermediate_size = static_cast<int64_t>(expand * static_cast<double>(c.hidden_size));
  // "auto": ceil(hidden_size / 16).
  if (arch_keys::Has(root, "time_step_rank") && root.at("time_step_rank").is_string()) {
    if (root.at("time_step_rank").get<std::string>() != "auto") {
      fail("time_step_rank",
           "expected an integer or \"auto\", got " + root.at("time_step_rank").dump());
    }
    c.time_step_rank = (c.hidden_size + 15) / 16;
  } else {
    c.time_step_rank = arch_keys::Int(root, source, "time_step_rank", (c.hidden_size + 15) / 16);
  }
  const auto flag = [&](const char* key, bool fallback) {
    if (!arch_keys::Has(root, key)) return fallback;
    if (!root.at(key).is_boolean()) fail(key, "expected true or false, got " + root.at(key).dump());
    return root.at(key).get<bool>();
  };
  c.use_bias = flag("use_bias", false);
  c.use_conv_bias = flag("use_conv_bias", true);
  c.rms_norm_eps = arch_keys::Number(root, source, "layer_norm_epsilon", 1e-5);
  c.hidden_act = arch_keys::Has(root, "hidden_act") && root.at("hidden_act").is_string()
                     ? root.at("hidden_act").get<std::string>()
                     : "silu";
  if (c.hidden_act != "silu") {
    fail("hidden_act", "unsupported value \"" + c.hidden_act + "\" for Mamba (supported: silu)");
  }
  if (c.state_size <= 0)
    fail("state_size", "must be positive, got " + std::to_string(c.state_size));
  if (c.conv_kernel <= 0) {
    fail("conv_kernel", "must be positive, got " + std::to_string(c.conv_kernel));
  }
  if (c.time_step_rank <= 0) {
    fail("time_step_rank", "must be positive, got " + std::to_string(c.time_step_rank));
  }
  if (c.intermediate_size <= 0) {
    fail("expand",
         "expand * hidden_size must be positive, got " + std::to_string(c.intermediate_size));
  }
}

std::vector<RecurrentTensor> MambaTensors(const ModelConfig& c, int64_t /*layer*/) {
  const int64_t d = c.hidden_size, di = c.intermediate_size, n = c.state_size, r = c.time_step_rank,
                k = c.conv_kernel;
  std::vector<RecurrentTensor> t = {
      {"norm.weight", {d}},
      {"mixer.in_proj.weight", {2 * di, d}},
      {"mixer.conv1d.weight", {di, 1, k}},
      {"mixer.x_proj.weight", {r + 2 * n, di}},
      {"mixer.dt_proj.weight", {di, r}},
      {"mixer.dt_proj.bias", {di}},
      {"mixer.A_log", {di, n}},
      {"mixer.D", {di}},
      {"mixer.out_proj.weight", {d, di}},
  };
  if (c.use_bias) {
    t.push_back({"mixer.in_proj.bias", {2 * di}});
    t.push_back({"mixer.out_proj.bias", {d}});
  }
  if (c.use_conv_bias) t.push_back({"mixer.conv1d.bias", {di}});
  return t;
}

// A function-local static: the registry may be read during other files' static initialisation.
const RecurrentSpec& MambaSpec() {
  static const RecurrentSpec s = {
      .kind = RecurrentKind::kMamba,
      .layer_prefix = "backbone.layers.",
      .embed = "backbone.embeddings.weight",
      .final_norm = "backbone.norm_f",
      .lm_head = "lm_head.weight",
      .final_norm_bias = false,
      .linears = {{"mixer.in_proj", "norm"},
                  {"mixer.x_proj"},
                  {"mixer.dt_proj", "", /*narrow_input=*/true},
                  {"mixer.out_proj"}},
      .tensors = MambaTensors,
  };
  return s;
}

}  // namespace

const Architecture& MambaArchitecture() {
  static const Architecture a = [] {
    Architecture a;
    a.model_type = "mamba";
    a.hf_class = "MambaForCausalLM";
    a.gguf_archs = {};  // llama.cpp's mamba GGUF layout is not read
    a.read_hf = ReadMamba;
    a.recurrent = &MambaSpec();
    return a;
  }();
  return a;
}

}  // namespace awq
