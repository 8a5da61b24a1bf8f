// A decoder-only transformer of any supported family (src/model/arch/): weights, the forward
// pass with a KV cache, the LM head, and the block walk that quantization observes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "awq/int4_kernels.h"
#include "awq/kv_cache.h"
#include "awq/model_config.h"
#include "awq/tensor.h"

namespace awq {

class ThreadPool;
class WeightSource;
struct Architecture;
struct Int8Rows;

// Where the block walk reports its activations, for observers that must not copy the walk
// (calibration capture, GPTQ's Hessians, activation statistics, layer metrics), as llama.cpp's
// graph callback feeds its importance matrix. Rows are tokens.
enum class BlockPoint : uint8_t {
  kAttnIn,   // [n, D]    the normed input of q/k/v
  kAttnCtx,  // [n, H*hd] the input of o_proj
  kAttnOut,  // [n, D]    the attention output (o_proj's, before any post-norm)
  kMlpIn,    // [n, D]    the normed input of gate/up
  kMlpAct,   // [n, I]    the input of down_proj
  kMlpOut,   // [n, D]    the MLP output (down_proj's, before any post-norm)
  kCount
};
// Called at each point with rows [n, width] that sit at rows row0 .. row0 + n - 1 of the batch.
// The data is only valid during the call.
using BlockObserver = std::function<void(BlockPoint point, int64_t row0, const float* rows,
                                         int64_t n, int64_t width)>;
// A recurrent block's observer: the input rows [n, width] of its linear number `linear` (the
// family's RecurrentSpec::linears order), rows row0 .. row0 + n - 1 of the batch.
using LinearInputObserver =
    std::function<void(int linear, int64_t row0, const float* rows, int64_t n, int64_t width)>;

// One decoder block. q/k/v and gate/up are stored fused so each pair of products is one GEMM;
// the separate Hugging Face tensors are row ranges of the fused ones. Norm weights are stored as
// the checkpoint has them (Gemma's around 0, applied as 1 + w).
struct LayerWeights {
  Tensor attn_norm;       // [D] before attention
  Tensor q_norm;          // [hd] or empty: per-head norm of q before RoPE (Qwen3, Gemma 3)
  Tensor k_norm;          // [hd] or empty
  Tensor post_attn_norm;  // [D] or empty: attention output normed before the residual (Gemma)
  Tensor wqkv;            // [(H + 2*KV) * hd, D]: q rows, then k rows, then v rows
  Tensor bqkv;            // [(H + 2*KV) * hd] or empty (attention_bias)
  Tensor wo;              // [D, H * hd]
  Tensor ffn_norm;        // [D] before the MLP
  Tensor post_ffn_norm;   // [D] or empty: MLP output normed before the residual (Gemma)
  Tensor w_gate_up;       // [2 * I, D]: gate rows, then up rows
  Tensor w_down;          // [D, I]
  // A mixture-of-experts MLP (ModelConfig::IsMoeLayer; w_gate_up and w_down then stay empty),
  // Ie = moe_intermediate_size, Is = shared_expert_intermediate_size:
  Tensor router;              // [E, D]
  Tensor experts_gate_up;     // [E, 2 * Ie, D]: each expert's gate rows, then its up rows
  Tensor experts_down;        // [E, D, Ie]
  Tensor shared_gate_up;      // [2 * Is, D] or empty (Qwen2-MoE's shared expert)
  Tensor shared_down;         // [D, Is] or empty
  Tensor shared_expert_gate;  // [1, D] or empty: the shared expert's output times sigmoid(g . x)
  // A recurrent family's layer (Mamba, RWKV; src/model/recurrent.h), every tensor fp32 under its
  // Hugging Face name below the layer prefix ("mixer.in_proj.weight"); the other fields stay
  // empty.
  std::map<std::string, Tensor> recurrent;
  // 4-bit copies of the same linears for the int4 kernels (null: the fp32 products run). Set by
  // Model::UseInt4Kernels; the fp32 tensors above then hold the same weights dequantized, or are
  // empty when Model::Load dropped them (LoadOptions::int4).
  std::shared_ptr<const Int4Matrix> qkv4, o4, gate_up4, down4;
  // A mixture of experts on the int4 kernels: each expert's gate/up [2 Ie, D] (gate rows, then
  // up rows) and down [D, Ie], and the shared expert's (empty: the fp32 tensors run).
  std::vector<std::shared_ptr<const Int4Matrix>> experts_gate_up4, experts_down4;
  std::shared_ptr<const Int4Matrix> shared_gate_up4, shared_down4;
};

struct ModelWeights {
  Tensor embed;  // [V, D], F32 or F16 (LoadOptions::int4 on an fp16 checkpoint)
  std::vector<LayerWeights> layers;
  Tensor final_norm;  // [D]
  Tensor lm_head;     // [V, D], F32 or F16; shares storage with embed when tie_word_embeddings
  // Set by LoadOptions::int8_lm_head: Logits runs this instead of lm_head.
  std::shared_ptr<const Int8Rows> lm_head8;
  // [D] or empty: the final norm is a LayerNorm with this bias (RWKV).
  Tensor final_norm_bias;
};

// How Model::Load treats a quantized checkpoint.
struct LoadOptions {
  // true (inference): a 4-bit AWQ folder keeps its decoder linears 4-bit in memory on the int4
  // kernels, with no fp32 copies (their LayerWeights tensors stay empty), and an fp16 LM head and
  // embedding stay fp16 (read in place from the mapped file). Falls back to fp32 when the folder
  // cannot run on the kernels (another bit width, mixed settings). The environment variable
  // AWQ_INT4=0 turns this off.
  // false: every weight dequantized to fp32, as quantization and weight analysis need.
  bool int4 = true;
  // Quantize the LM head to int8 per row (symmetric, max |w| / 127) at load: a quarter of fp32's
  // and half of fp16's bytes per decoded token, at a small perplexity cost (docs/KERNELS.md).
  // Off by default: the head then runs exactly as the checkpoint stores it.
  bool int8_lm_head = false;
};

// A model with random weights generated in memory, for benchmarks whose numbers must not be
// flattered by caches (a 7B-shaped model is far larger than any L3).
struct SyntheticOptions {
  bool int4 = true;          // decoder linears 4-bit on the int4 kernels (zero point on), else fp32
  int64_t group_size = 128;  // int4 group width, a multiple of 8 dividing every input width
  bool f16_head = true;      // embedding and LM head fp16 (as AWQ checkpoints keep them), else fp32
  uint64_t seed = 1;
};

// The Hugging Face names of a decoder layer's linears ("model.layers.3.self_attn.q_proj"), in
// the checkpoint order of the family's description (q, k, v, o, gate, up, down for most; Phi-3's
// qkv_proj, o_proj, gate_up_proj, down_proj). A mixture-of-experts layer lists its attention
// linears only.
std::vector<std::string> LinearNames(const ModelConfig& config, int64_t layer);

// Llama-2-7B's shapes (d 4096, 32 heads, MLP 11008, vocabulary 32000) with `layers` decoder
// layers.
ModelConfig Llama2_7bConfig(int64_t layers);

// The parameters a model of this config holds (what Model::ParameterCount() counts when loaded).
int64_t ParameterCount(const ModelConfig& config);

// How a sparse layer's router sends n rows to its experts: for each expert, the rows it
// received (ascending) and the weight its output gets on each (the top-k softmax probability,
// divided by the top-k sum where the family renormalises).
struct MoeRouting {
  std::vector<std::vector<int64_t>> rows;   // [num_experts]
  std::vector<std::vector<float>> weights;  // [num_experts], parallel to rows
};

class Model {
 public:
  // Loads a GGUF file or a Hugging Face folder (config.json + safetensors); see LoadOptions.
  static Model Load(const std::string& path, const LoadOptions& options = {});
  // Every weight of `source` in fp32.
  static Model FromSource(const WeightSource& source);
  // A model read one decoder block at a time, for quantizing models larger than memory: the
  // config and final norm are loaded, the embedding is a view of the mapped file in its stored
  // dtype (F32, F16 or BF16; a GGUF's is converted to F32), and no block holds weights until
  // LoadBlock(layer) reads its tensors from the file (converted to fp32, the fused layout);
  // ReleaseBlock(layer) frees them. Throws awq::Error as Load does.
  static Model OpenStreaming(const std::string& path);
  void LoadBlock(int64_t layer);
  void ReleaseBlock(int64_t layer);
  // The file the blocks are read from; null unless opened with OpenStreaming.
  const WeightSource* source() const { return source_.get(); }
  // Random weights of config's shapes (weights are small and zero-mean, so activations stay
  // finite); deterministic for a seed. Throws awq::Error for an invalid config or group size.
  static Model Synthetic(const ModelConfig& config, const SyntheticOptions& options);

  const ModelConfig& config() const { return config_; }
  ModelWeights& weights() { return weights_; }
  const ModelWeights& weights() const { return weights_; }
  int64_t ParameterCount() const;

  KvCache NewCache(int64_t max_tokens) const;

  // Switches every decoder linear to the int4 kernels, given the 4-bit QuantizedLinear of each
  // linear by Hugging Face module name (LinearNames()). q/k/v and gate/up are fused by stacking
  // rows. Returns false (and changes nothing) unless every linear is present, 4-bit, and the
  // fused parts share their settings. Forward() then uses them; the module-level batch forwards
  // below keep using explicit fp32 weights.
  bool UseInt4Kernels(const std::map<std::string, QuantizedLinear>& linears);
  bool uses_int4() const;
  // Which int4 kernel the forward passes use (default kAuto: int8 activations for single-token
  // decode, fp32 activations for prompts; see Int4Linear).
  void set_int4_kernel(Int4Kernel k) { int4_kernel_ = k; }
  Int4Kernel int4_kernel() const { return int4_kernel_; }
  // True when the fp32 copies of the decoder linears are present (quantization and weight
  // analysis read them).
  bool has_dense_linears() const;
  // Throws awq::Error naming `what` unless every weight is fp32 (has_dense_linears() and an fp32
  // embedding): what module-level analysis of the weights needs (Load with LoadOptions{false}).
  void RequireFp32Weights(const std::string& what) const;
  // Bytes of weights one decode step reads: every decoder linear (int4 or fp32 as it runs), the
  // norms and the LM head (the embedding row read per token is negligible and not counted); of a
  // mixture of experts, the router, the shared expert and the average top-k share of the experts.
  int64_t DecodeWeightBytes() const;

  // Runs n tokens at positions cache.size() .. cache.size() + n - 1, appends their keys and
  // values to the cache and writes the final-normed hidden states to hidden [n, D].
  void Forward(const int32_t* tokens, int64_t n, KvCache& cache, float* hidden) const;
  // x [n, D] = the embeddings of `tokens` (ids checked), scaled as the family does (Gemma:
  // sqrt(D)): the first block's input.
  void EmbedTokens(const int32_t* tokens, int64_t n, float* x) const;
  // logits [n, V] = hidden [n, D] * lm_head^T.
  void Logits(const float* hidden, int64_t n, float* logits) const;

  // One decoder block on x [n, D] in place, for tokens at positions pos0 .. pos0 + n - 1; reads
  // positions [0, pos0) of this layer's cache and writes the new ones. `observe`, when set, sees
  // every BlockPoint (row0 = 0). This is the one block walk: every other pass runs it.
  void BlockForward(int64_t layer, float* x, int64_t n, int64_t pos0, KvCache& cache,
                    const BlockObserver* observe = nullptr) const;
  // The same walk over n_seq independent sequences of seq_len tokens (positions 0 .. seq_len-1
  // each, no cache): x [n_seq * seq_len, D] in place, the observer called per sequence with its
  // row offset.
  void BlockForwardBatch(int64_t layer, float* x, int64_t n_seq, int64_t seq_len,
                         const BlockObserver* observe) const;

  // A recurrent family's block (Mamba, RWKV) over n_seq independent sequences of seq_len tokens,
  // each from the initial state: x [n_seq * seq_len, D] in place, `observe` (may be null) told
  // every linear's input. BlockForward and BlockForwardBatch run the same walk.
  void RecurrentBlockBatch(int64_t layer, float* x, int64_t n_seq, int64_t seq_len,
                           const LinearInputObserver* observe) const;

  // Module-level forwards over a batch of n_seq independent sequences of seq_len tokens
  // (positions 0 .. seq_len-1 each), with explicit weights so that quantization can run a
  // module with candidate weights. Rows are tokens: x is [n_seq * seq_len, D].
  //
  // Layer `layer`'s self-attention from the normed input, as the block runs it (q/k norms, RoPE
  // with the layer's base, its window and query scale): out [N, D] = o_proj(attention(...));
  // ctx [N, H*hd] (the o_proj input) is written when not null. wqkv [(H+2KV)*hd, D],
  // bqkv [(H+2KV)*hd] or null, wo [D, H*hd].
  // The layer's own bias (if any) is added to the q/k/v product.
  void AttentionBatch(int64_t layer, const float* wqkv, const float* wo, const float* x,
                      int64_t n_seq, int64_t seq_len, float* ctx, float* out) const;
  // Gated MLP from the normed input: out [n, D] = down(act(gate x) * up x) with the family's
  // activation; act [n, I] (the down_proj input) is written when not null. w_gate_up [2I, D],
  // w_down [D, I].
  void MlpBatch(int64_t layer, const float* w_gate_up, const float* w_down, const float* x,
                int64_t n, float* act, float* out) const;
  // A sparse layer's routing of x [n, D] (the normed MLP input).
  MoeRouting RouteExperts(int64_t layer, const float* x, int64_t n) const;
  // The sparse layer's mixture of experts on x [n, D] routed by `routing`: out [n, D] = the
  // weighted experts' outputs plus the gated shared expert, with explicit gate/up weights for
  // every expert (experts_gate_up [E, 2 Ie, D], shared_gate_up [2 Is, D]; null: the layer's own)
  // and the layer's own down_proj weights, so quantization can run it with candidate weights.
  void MoeBatch(int64_t layer, const MoeRouting& routing, const float* experts_gate_up,
                const float* shared_gate_up, const float* x, int64_t n, float* out) const;
  // One expert's down_proj input on m rows x [m, D] (expert kSharedExpert of model/arch.h, -1:
  // the shared expert): act [m, width] = silu(gate x) * up x with the layer's own weights.
  void ExpertActivation(int64_t layer, int64_t expert, const float* x, int64_t m, float* act) const;
  // The family's RMSNorm with the model's epsilon: y [n, D] = norm(x) * w, or * (1 + w).
  void Norm(const float* x, const float* w, int64_t n, float* y) const;

 private:
  static Model Build(const WeightSource& source, bool dense_linears);
  static Model LoadWeights(const std::string& path, const LoadOptions& options);
  // RoPE tables for config_ and the global pool: the state every constructor ends with.
  void InitRuntime();
  // The attention module with explicit fp32 weights (null: the layer's own, int4 or fp32) on
  // n rows at positions pos0.. (cache null: a sequence from position 0, no cache).
  void Attention(int64_t layer, const float* wqkv, const float* wo, const float* x, int64_t n,
                 int64_t pos0, KvCache* cache, float* ctx, float* out, bool accumulate) const;
  void Mlp(int64_t layer, const float* w_gate_up, const float* w_down, const float* x, int64_t n,
           float* act, float* out, bool accumulate) const;
  // A mixture-of-experts MLP on n rows x [n, D]: out [n, D] (+)= the routed experts' outputs
  // weighted by their (renormalised) top-k router probabilities, plus the gated shared expert.
  void MoeMlp(int64_t layer, const float* x, int64_t n, float* out, bool accumulate) const;
  // MoeMlp's products for a given routing and gate/up weights (null: the layer's own).
  void MoeApply(int64_t layer, const MoeRouting& routing, const float* experts_gate_up,
                const float* shared_gate_up, const float* x, int64_t n, float* out,
                bool accumulate) const;
  // The block walk behind BlockForward and BlockForwardBatch (cache null: a fresh sequence).
  void Walk(int64_t layer, float* x, int64_t n, int64_t pos0, KvCache* cache,
            const BlockObserver* observe, int64_t row0) const;
  // The recurrent families' block and forward (src/model/recurrent.cc): the state in `cache`
  // (null: the initial state, not kept) continues unless pos0 is 0.
  void RecurrentWalk(int64_t layer, float* x, int64_t n, int64_t pos0, KvCache* cache,
                     const LinearInputObserver* observe, int64_t row0) const;
  void RecurrentForward(const int32_t* tokens, int64_t n, KvCache& cache, float* hidden) const;

  ModelConfig config_;
  ModelWeights weights_;
  std::shared_ptr<const WeightSource> source_;  // OpenStreaming's file
  // RoPE tables [max_positions, hd/2]: [0] the global layers', [1] the sliding-window layers'
  // when their base differs (Gemma 3), else empty.
  std::vector<float> rope_cos_[2], rope_sin_[2];
  int64_t rope_positions_ = 0;
  ThreadPool* pool_ = nullptr;
  // The family's description (src/model/arch.h), looked up once in InitRuntime rather than per
  // block call.
  const Architecture* arch_ = nullptr;
  Int4Kernel int4_kernel_ = Int4Kernel::kAuto;
};

}  // namespace awq
