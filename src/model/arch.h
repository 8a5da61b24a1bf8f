// Model families as data: one Architecture per family (src/model/arch/<name>.cc) says which
// config keys it reads, which tensors it has under which names, how its decoder block is built
// from the shared blocks, and how AWQ scales and folds it. Loading, the forward pass,
// quantization, checkpoints and the int4 packer read these descriptions; none of them names a
// family.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "awq/gguf.h"
#include "awq/model_config.h"

namespace awq {

class GgufFile;

// The norms of the shared blocks. kRms: y = x / rms(x) * w (Llama). kRmsOnePlus: y = x / rms(x)
// * (1 + w) (Gemma, which stores w around 0): folding a scale into it is w' = (1 + w) / s - 1,
// not w / s.
enum class NormKind : uint8_t { kRms, kRmsOnePlus, kCount };
// The gated MLP's activation: down(act(gate x) * up x).
enum class Activation : uint8_t { kSilu, kGeluTanh, kCount };

// The four products of a block, each one matrix in memory: a checkpoint's separate q/k/v and
// gate/up linears are row ranges of the fused kQkv and kGateUp matrices.
enum class Slot : uint8_t { kQkv, kO, kGateUp, kDown, kCount };
// A row range of a slot: kAll the whole matrix, the others the usual parts of a fused one.
enum class Part : uint8_t { kAll, kQ, kK, kV, kGate, kUp, kCount };

// One linear as a checkpoint names it, and where its rows live in memory.
struct LinearSpec {
  const char* name;  // Hugging Face module under "model.layers.N.": "self_attn.q_proj"
  const char* gguf;  // llama.cpp's tensor under "blk.N.": "attn_q"
  Slot slot;
  Part part;
};

// Rows [row0, row0 + rows) of a slot whose matrix has `in` columns.
struct RowRange {
  int64_t row0 = 0, rows = 0, in = 0;
};
RowRange SlotRows(const ModelConfig& c, Slot slot, Part part);

// The norms of a block by role; the Hugging Face module name of each ("" when absent).
struct NormNames {
  const char* attn_in = "input_layernorm";          // before attention
  const char* mlp_in = "post_attention_layernorm";  // before the MLP
  const char* attn_out = "";                        // after attention, before the residual
  const char* mlp_out = "";                         // after the MLP, before the residual
  const char* q = "";                               // per head, on q before RoPE
  const char* k = "";                               // per head, on k before RoPE
};

// The op whose output absorbs an AWQ scale (AutoAWQ's prev_op): a norm, or the last rows of a
// linear (the v rows of q/k/v, the up rows of gate/up).
enum class ScaleOwner : uint8_t { kAttnInNorm, kMlpInNorm, kVRows, kUpRows, kCount };
// The module whose output the scale search compares (AutoAWQ's module2inspect): the whole
// attention or MLP, or the scaled slot's own product.
enum class Inspect : uint8_t { kAttention, kMlp, kOwnOutput, kCount };

// One AWQ group: the linears of `slot` share a scale vector over their input channels.
struct AwqGroupSpec {
  const char* name;  // "qkv", "o", "gate_up", "down" (reports)
  ScaleOwner owner;
  Slot slot;
  Inspect inspect;
  // Searched only when the owner's scaled rows match the slot's inputs (v -> o without grouped-
  // query attention, as AutoAWQ requires).
  bool needs_matching_rows = false;
};

// The groups AutoAWQ uses for Llama, Mistral, Qwen2/3, Gemma and Phi-3 (awq/models/*.py):
// attention-input norm -> q/k/v (inspect attention); v -> o; MLP-input norm -> gate/up (inspect
// the MLP); up -> down.
extern const std::vector<AwqGroupSpec> kStandardAwqGroups;
// q, k, v, o, gate, up, down as separate checkpoint linears (every family but Phi-3).
extern const std::vector<LinearSpec> kSeparateLinears;
// q, k, v, o alone (Mixtral, whose every MLP is a mixture of experts).
extern const std::vector<LinearSpec> kAttentionLinears;

// How the block walk runs a family's layer (gemma.cpp's per-layer config struct).
struct BlockRecipe {
  NormKind norm = NormKind::kRms;
  Activation activation = Activation::kSilu;
  bool qk_norm = false;          // q/k normed per head before RoPE (Qwen3, Gemma 3)
  bool post_norms = false;       // attention and MLP outputs normed before the residual
  bool scale_embedding = false;  // embeddings multiplied by sqrt(hidden_size) (Gemma)
};

// The tensors of a mixture-of-experts MLP, as Hugging Face names them under "model.layers.N."
// (llama.cpp's GGUF layout of experts is not read). Expert e's linears are
// experts + "e." + gate/up/down; a family without a shared expert leaves those names empty.
struct MoeNames {
  const char* router = "";       // [num_experts, D]: "block_sparse_moe.gate", "mlp.gate"
  const char* experts = "";      // "block_sparse_moe.experts.", "mlp.experts."
  const char* gate = "";         // [moe_I, D]: "w1", "gate_proj"
  const char* up = "";           // [moe_I, D]: "w3", "up_proj"
  const char* down = "";         // [D, moe_I]: "w2", "down_proj"
  const char* shared = "";       // Qwen2-MoE "mlp.shared_expert" (its gate/up/down_proj)
  const char* shared_gate = "";  // [1, D]: "mlp.shared_expert_gate"
};

struct RecurrentSpec;  // src/model/recurrent.h

struct Architecture {
  const char* model_type;               // config.json "model_type"
  const char* hf_class;                 // "architectures"[0] written for it
  std::vector<const char*> gguf_archs;  // GGUF general.architecture values
  BlockRecipe recipe;
  NormNames norms;
  // Dense linears, checkpoint order. A mixture-of-experts family lists its attention linears
  // and, where some layers keep a dense MLP (Qwen's mlp_only_layers), the dense MLP's; a sparse
  // layer fetches its experts by `moe` instead of the gate/up and down slots.
  std::vector<LinearSpec> linears;
  MoeNames moe;  // empty names: a dense family
  std::vector<AwqGroupSpec> awq_groups;
  // Modules AutoAWQ never quantizes for this family (QuantConfig::modules_to_not_convert).
  std::vector<std::string> default_not_convert;
  // GGUF quirks: q/k rows interleaved by llama.cpp's converter (the "normal" rope), and norms
  // stored as 1 + w (Gemma).
  bool gguf_permuted_qk = false;
  bool gguf_norm_plus_one = false;
  // Family keys of config.json beyond the common ones (may be null).
  void (*read_hf)(const nlohmann::json& root, const std::string& source, ModelConfig& c) = nullptr;
  // Family keys of GGUF metadata (prefix "<arch>.") beyond the common ones (may be null).
  void (*read_gguf)(const GgufFile& gguf, const std::string& prefix, ModelConfig& c) = nullptr;
  // Family keys written into config.json for a model that came from GGUF (may be null).
  void (*write_hf)(const ModelConfig& c, nlohmann::json& j) = nullptr;
  // GGUF output: the general.architecture written (null: gguf_archs[0]; Mistral is written as
  // "llama", as llama.cpp's converter does), and the family keys beyond the common ones.
  const char* gguf_write_arch = nullptr;
  void (*write_gguf)(const ModelConfig& c, const std::string& prefix, GgufMetadata& kv) = nullptr;
  // A recurrent family (Mamba, RWKV): its layers, tensors and state (src/model/recurrent.h);
  // `recipe`, `norms`, `linears` and `awq_groups` above are then unused. Null: attention blocks.
  const RecurrentSpec* recurrent = nullptr;
};

// The description of config.model_type; throws awq::Error listing the supported types.
const Architecture& ArchitectureOf(const ModelConfig& c);
// nullptr when unsupported.
const Architecture* FindArchitecture(const std::string& model_type);
const Architecture* FindGgufArchitecture(const std::string& gguf_arch);
// "gemma3_text, llama, mistral, phi3, qwen2, qwen3" for messages.
std::string SupportedModelTypes();
// "gemma3, llama, ..." (GGUF general.architecture values) for messages.
std::string SupportedGgufArchitectures();

// The model's hyper-parameters as GGUF metadata (general.architecture and the "<arch>." keys
// llama.cpp reads), checked by reading them back with ConfigFromGguf: a setting GGUF cannot
// hold (a RoPE scaling other than linear, a Gemma 3 layer pattern or query scale llama.cpp does
// not assume, a sliding window on a family whose GGUF form has none) is an awq::Error naming
// `source`, the config key and its value.
GgufMetadata GgufConfigMetadata(const ModelConfig& c, const std::string& source);

// "model.layers.N." + name.
std::string LayerPrefix(int64_t layer);

// The quantizable linears of a sparse layer's mixture of experts, in checkpoint order: each
// expert's gate, up and down, then the shared expert's (Qwen2-MoE). The router and the shared
// expert's [1, D] gate are not among them: they stay in full precision (the families'
// default_not_convert), as AutoAWQ and vLLM keep them.
constexpr int64_t kSharedExpert = -1;
struct ExpertLinearSpec {
  std::string name;  // "model.layers.3.block_sparse_moe.experts.5.w1"
  int64_t expert;    // 0 .. num_experts - 1, or kSharedExpert
  Part part;         // kGate, kUp, or kAll (down)
  int64_t rows, in;
};
// Empty for a dense layer.
std::vector<ExpertLinearSpec> ExpertLinears(const ModelConfig& c, int64_t layer);

// llama.cpp's name of a Hugging Face tensor ("model.layers.3.self_attn.q_proj.weight" ->
// "blk.3.attn_q.weight"), by the family's description; "" when it has none.
std::string GgufTensorName(const Architecture& arch, const std::string& hf_name);
// The expert of a mixture-of-experts linear ("...experts.5.w1.weight" -> 5; its GGUF tensor
// stacks every expert), or -1.
int64_t GgufExpertIndex(const Architecture& arch, const std::string& hf_name);
// llama.cpp's converter interleaves the two rotary halves of every q and k head (families with
// gguf_permuted_qk): GGUF row i of a q or k matrix of `rows` rows and `n_heads` heads holds
// Hugging Face row order[i].
std::vector<int64_t> GgufQkRowOrder(int64_t rows, int64_t n_heads);

// The registered families (one definition per src/model/arch/<name>.cc).
const Architecture& LlamaArchitecture();
const Architecture& MistralArchitecture();
const Architecture& Qwen2Architecture();
const Architecture& Qwen3Architecture();
const Architecture& Phi3Architecture();
const Architecture& Gemma3Architecture();
const Architecture& MixtralArchitecture();
const Architecture& Qwen2MoeArchitecture();
const Architecture& Qwen3MoeArchitecture();
const Architecture& MambaArchitecture();
const Architecture& RwkvArchitecture();

// Helpers the descriptions share for reading config keys (errors name source, key and value).
namespace arch_keys {
int64_t Int(const nlohmann::json& root, const std::string& source, const char* key,
            int64_t fallback);
double Number(const nlohmann::json& root, const std::string& source, const char* key,
              double fallback);
bool Has(const nlohmann::json& root, const char* key);
// "layer_types": ["sliding_attention", "full_attention", ...] (transformers >= 4.53).
void ReadLayerTypes(const nlohmann::json& root, const std::string& source, ModelConfig& c);
void WriteLayerTypes(const ModelConfig& c, nlohmann::json& j);
// "sliding_window": the window on every layer, or null (Mistral, Phi-3).
void WriteSlidingWindow(const ModelConfig& c, nlohmann::json& j);
// The mixture-of-experts keys: `experts_key` (num_local_experts for Mixtral, num_experts for
// Qwen; the other spelling is accepted too), num_experts_per_tok, moe_intermediate_size
// (`expert_width` when absent: Mixtral's experts are intermediate_size wide),
// shared_expert_intermediate_size, and Qwen's mlp_only_layers / decoder_sparse_step.
void ReadMoe(const nlohmann::json& root, const std::string& source, const char* experts_key,
             int64_t expert_width, ModelConfig& c);
// The mixture-of-experts keys of llama.cpp's GGUF ("<arch>.expert_count", expert_used_count,
// expert_feed_forward_length, expert_shared_feed_forward_length): every layer sparse, the top-k
// renormalised as `norm_topk_prob` says llama.cpp's graph for the architecture does.
void ReadMoeGguf(const GgufFile& gguf, const std::string& prefix, bool norm_topk_prob,
                 ModelConfig& c);
void WriteMoeGguf(const ModelConfig& c, const std::string& prefix, GgufMetadata& kv);
}  // namespace arch_keys

}  // namespace awq
