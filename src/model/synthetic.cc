// Models with random weights generated in memory (Model::Synthetic), for benchmarks.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <string>

#include "awq/error.h"
#include "awq/half.h"
#include "awq/model.h"
#include "awq/thread_pool.h"

namespace awq {

namespace {

// splitmix64: a fast, well-mixed generator; one stream per (seed, tensor, chunk) so the weights
// do not depend on the thread count.
struct SplitMix {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [-a, a).
  float Uniform(float a) {
    return a * (static_cast<float>(Next() >> 40) * (2.0f / 16777216.0f) - 1.0f);
  }
};

constexpr int64_t kChunk = 1 << 16;  // elements per generator stream

// Amplitude of the random weights: about 1/sqrt(fan-in), so every product keeps the RMS of its
// input and the residual stream neither vanishes nor overflows through the layers.
float Amplitude(int64_t in) { return 1.7f / std::sqrt(static_cast<float>(in)); }

// A tensor of `dtype` (F32 or F16) filled with Uniform(amp) values, stored through `put`.
template <class T, class Put>
Tensor RandomTensor(DType dtype, Shape shape, float amp, uint64_t seed, Put put) {
  Tensor t(dtype, std::move(shape));
  T* p = t.data<T>();
  const int64_t n = t.numel();
  ThreadPool::Global().ParallelFor((n + kChunk - 1) / kChunk, [&](int64_t c0, int64_t c1, int) {
    for (int64_t c = c0; c < c1; ++c) {
      SplitMix g{seed * 0x100000001B3ull + static_cast<uint64_t>(c)};
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) {
        p[i] = put(g.Uniform(amp));
      }
    }
  });
  return t;
}

Tensor RandomF32(Shape shape, float amp, uint64_t seed) {
  return RandomTensor<float>(DType::kF32, std::move(shape), amp, seed, [](float v) { return v; });
}

Tensor RandomF16(Shape shape, float amp, uint64_t seed) {
  return RandomTensor<uint16_t>(DType::kF16, std::move(shape), amp, seed,
                                [](float v) { return Fp32ToFp16(v); });
}

// A random 4-bit matrix written straight into the kernel layout: uniform codes, zero 8 and one
// scale per group chosen so the weights have Amplitude(in).
std::shared_ptr<const Int4Matrix> RandomInt4(int64_t out, int64_t in, int64_t group,
                                             uint64_t seed) {
  auto w = std::make_shared<Int4Matrix>();
  w->out = out;
  w->in = in;
  w->group_size = group;
  w->params = {4, group, true};
  w->slots.resize(static_cast<size_t>(w->row_blocks() * w->slots_per_block()));
  const uint16_t scale = Fp32ToFp16(Amplitude(in) / 8.0f), zero = Fp32ToFp16(8.0f);
  const int64_t per_block = w->slots_per_block();
  ThreadPool::Global().ParallelFor(w->row_blocks(), [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b) {
      SplitMix g{seed * 0x100000001B3ull + static_cast<uint64_t>(b)};
      Int4Codes* slot = w->slots.data() + b * per_block;
      for (int64_t gi = 0; gi < w->n_groups(); ++gi) {
        Int4GroupHeader h;
        for (int r = 0; r < 8; ++r) {
          const bool real_row = b * kInt4Rows + r < out;
          h.scale[r] = real_row ? scale : 0;
          h.zero[r] = zero;
        }
        std::memcpy(slot++, &h, sizeof(h));
        for (int64_t c = 0; c < group / kInt4Inputs; ++c, ++slot) {
          for (int r = 0; r < 8; ++r) slot->row[r] = static_cast<uint32_t>(g.Next());
        }
      }
    }
  });
  return w;
}

}  // namespace

ModelConfig Llama2_7bConfig(int64_t layers) {
  ModelConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 4096;
  c.intermediate_size = 11008;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 32;
  c.head_dim = 128;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.torch_dtype = "float16";
  return c;
}

Model Model::Synthetic(const ModelConfig& config, const SyntheticOptions& o) {
  config.Validate("synthetic model");
  const ModelConfig& c = config;
  const int64_t d = c.hidden_size, hd = c.head_dim, h = c.num_attention_heads,
                kv = c.num_key_value_heads, inter = c.intermediate_size, v = c.vocab_size;
  const int64_t qkv = (h + 2 * kv) * hd;
  if (o.int4) {
    for (const int64_t in : {d, h * hd, inter}) {
      if (o.group_size <= 0 || o.group_size % kInt4Inputs != 0 || in % o.group_size != 0) {
        throw Error("synthetic model: group size " + std::to_string(o.group_size) +
                    " does not divide input width " + std::to_string(in) + " in multiples of 8");
      }
    }
  }
  Model m;
  m.config_ = c;
  uint64_t seed = o.seed * 1000;
  auto next = [&] { return ++seed; };
  m.weights_.embed = o.f16_head ? RandomF16({v, d}, 1.0f, next()) : RandomF32({v, d}, 1.0f, next());
  m.weights_.final_norm = RandomF32({d}, 0.1f, next());
  for (float& x : std::span(m.weights_.final_norm.data<float>(), static_cast<size_t>(d))) x += 1.0f;
  if (c.tie_word_embeddings) {
    m.weights_.lm_head = m.weights_.embed;
  } else {
    m.weights_.lm_head = o.f16_head ? RandomF16({v, d}, Amplitude(d), next())
                                    : RandomF32({v, d}, Amplitude(d), next());
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = RandomF32({d}, 0.0f, next());
    lw.ffn_norm = RandomF32({d}, 0.0f, next());
    for (Tensor* n : {&lw.attn_norm, &lw.ffn_norm}) {
      for (float& x : std::span(n->data<float>(), static_cast<size_t>(d))) x = 1.0f;
    }
    if (o.int4) {
      lw.qkv4 = RandomInt4(qkv, d, o.group_size, next());
      lw.o4 = RandomInt4(d, h * hd, o.group_size, next());
      lw.gate_up4 = RandomInt4(2 * inter, d, o.group_size, next());
      lw.down4 = RandomInt4(d, inter, o.group_size, next());
    } else {
      lw.wqkv = RandomF32({qkv, d}, Amplitude(d), next());
      lw.wo = RandomF32({d, h * hd}, Amplitude(h * hd), next());
      lw.w_gate_up = RandomF32({2 * inter, d}, Amplitude(d), next());
      lw.w_down = RandomF32({d, inter}, Amplitude(inter), next());
    }
    m.weights_.layers.push_back(std::move(lw));
  }
  m.InitRuntime();
  return m;
}

}  // namespace awq
