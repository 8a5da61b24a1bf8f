// llama-quantize's per-tensor type rule (llama.cpp's llama_tensor_get_type), for the file types
// awq.cpp writes and dense models without an importance matrix. Written from llama.cpp's
// behaviour as of mid-2025; tests/gguf_recipe_test.cc pins the cases that matter.
#include "awq/gguf_recipe.h"

#include <cctype>
#include <cstdio>
#include <string>

#include "awq/error.h"

namespace awq {

namespace {

struct FileTypeInfo {
  GgufFileType type;
  const char* name;
  GgmlType base;  // the type of every quantized tensor before the rule's adjustments
};

constexpr FileTypeInfo kFileTypes[] = {
    {GgufFileType::kF32, "F32", GgmlType::kF32},
    {GgufFileType::kF16, "F16", GgmlType::kF16},
    {GgufFileType::kBF16, "BF16", GgmlType::kBF16},
    {GgufFileType::kQ4_0, "Q4_0", GgmlType::kQ4_0},
    {GgufFileType::kQ4_1, "Q4_1", GgmlType::kQ4_1},
    {GgufFileType::kQ5_0, "Q5_0", GgmlType::kQ5_0},
    {GgufFileType::kQ5_1, "Q5_1", GgmlType::kQ5_1},
    {GgufFileType::kQ8_0, "Q8_0", GgmlType::kQ8_0},
    {GgufFileType::kQ2_K, "Q2_K", GgmlType::kQ2_K},
    {GgufFileType::kQ3_K_S, "Q3_K_S", GgmlType::kQ3_K},
    {GgufFileType::kQ3_K_M, "Q3_K_M", GgmlType::kQ3_K},
    {GgufFileType::kQ3_K_L, "Q3_K_L", GgmlType::kQ3_K},
    {GgufFileType::kQ4_K_S, "Q4_K_S", GgmlType::kQ4_K},
    {GgufFileType::kQ4_K_M, "Q4_K_M", GgmlType::kQ4_K},
    {GgufFileType::kQ5_K_S, "Q5_K_S", GgmlType::kQ5_K},
    {GgufFileType::kQ5_K_M, "Q5_K_M", GgmlType::kQ5_K},
    {GgufFileType::kQ6_K, "Q6_K", GgmlType::kQ6_K},
    {GgufFileType::kIQ4_NL, "IQ4_NL", GgmlType::kIQ4_NL},
};

const FileTypeInfo& Info(GgufFileType t) {
  for (const FileTypeInfo& i : kFileTypes) {
    if (i.type == t) return i;
  }
  throw Error("GGUF file type " + std::to_string(static_cast<uint32_t>(t)) + " is not supported");
}

bool Contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

int64_t BlockElems(GgmlType t) {
  int64_t elems = 0, bytes = 0;
  if (!GgmlTypeLayout(t, &elems, &bytes)) throw Error("ggml type " + GgmlTypeName(t) + " unknown");
  return elems;
}

// "blk.12.ffn_down.weight" -> 12; -1 for global tensors.
int64_t LayerOf(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third one between.
bool UseMoreBits(int64_t i, int64_t n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

}  // namespace

GgufFileType ParseGgufFileType(const std::string& name) {
  std::string up;
  for (char c : name) up += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const FileTypeInfo& i : kFileTypes) {
    if (up == i.name) return i.type;
  }
  throw Error("--gguf-type '" + name + "' is not supported; choose one of " + GgufFileTypeNames());
}

std::string GgufFileTypeName(GgufFileType t) { return Info(t).name; }

std::string GgufFileTypeNames() {
  std::string s;
  for (const FileTypeInfo& i : kFileTypes) s += (s.empty() ? "" : ", ") + std::string(i.name);
  return s;
}

bool GgufQuantizesTensor(const std::string& name, int n_dims) {
  const std::string suffix = "weight";
  if (name.size() < suffix.size() ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  return n_dims >= 2 && !Contains(name, "_norm.weight") && !Contains(name, "ffn_gate_inp.weight");
}

GgmlType GgufTensorType(GgufFileType ft, const std::string& name, int64_t cols,
                        const GgufRecipeModel& m) {
  using F = GgufFileType;
  using T = GgmlType;
  T t = Info(ft).base;
  if (t == T::kF32 || t == T::kF16 || t == T::kBF16) return t;  // no per-tensor rule
  const int64_t layer = LayerOf(name);
  const int64_t n = m.n_layer;
  const int64_t gqa = m.n_head_kv > 0 ? m.n_head / m.n_head_kv : 1;
  // llama.cpp's 70B class (80 layers with grouped-query attention) gets more bits on attn_v.
  const bool is_70b = m.n_layer == 80 && gqa > 1;

  if (name == "output.weight" || (!m.has_output && name == "token_embd.weight")) {
    if (cols % BlockElems(t) != 0) {
      t = T::kQ8_0;
    } else if (t != T::kQ8_0) {
      t = T::kQ6_K;
    }
  } else if (name == "token_embd.weight") {
    // The base type.
  } else if (Contains(name, "attn_v.weight")) {
    if (ft == F::kQ2_K) {
      t = gqa >= 4 ? T::kQ4_K : T::kQ3_K;
    } else if (ft == F::kQ3_K_M) {
      t = layer < 2 ? T::kQ5_K : T::kQ4_K;
    } else if (ft == F::kQ3_K_L) {
      t = T::kQ5_K;
    } else if (ft == F::kIQ4_NL && gqa >= 4) {
      t = T::kQ5_K;
    } else if ((ft == F::kQ4_K_M || ft == F::kQ5_K_M) && UseMoreBits(layer, n)) {
      t = T::kQ6_K;
    } else if (ft == F::kQ4_K_S && layer < 4) {
      t = T::kQ5_K;
    }
    if (is_70b && (t == T::kQ3_K || t == T::kQ4_K)) t = T::kQ5_K;
    // llama.cpp: "for the 8-expert model, bumping this to Q8_0 trades just ~128MB".
    if (m.n_expert == 8) t = T::kQ8_0;
  } else if (Contains(name, "attn_k.weight")) {
    if (m.n_expert == 8) t = T::kQ8_0;
  } else if (Contains(name, "ffn_down")) {
    if (ft == F::kQ2_K) {
      t = T::kQ3_K;
    } else if (ft == F::kQ3_K_M) {
      t = layer < n / 16 ? T::kQ5_K : T::kQ4_K;
    } else if (ft == F::kQ3_K_L) {
      t = T::kQ5_K;
    } else if (ft == F::kQ4_K_M) {
      if (UseMoreBits(layer, n)) t = T::kQ6_K;
    } else if (ft == F::kIQ4_NL && layer < n / 8) {
      t = T::kQ5_K;
    } else if (ft == F::kQ5_K_M && UseMoreBits(layer, n)) {
      t = T::kQ6_K;
    } else if (ft == F::kQ4_K_S && layer < n / 8) {
      t = T::kQ5_K;
    }
  } else if (Contains(name, "attn_output.weight") && m.n_expert == 8) {
    if (ft == F::kQ2_K || ft == F::kQ3_K_S || ft == F::kQ3_K_M || ft == F::kIQ4_NL ||
        ft == F::kQ4_K_S || ft == F::kQ4_K_M) {
      t = T::kQ5_K;
    }
  } else if (Contains(name, "attn_output.weight")) {
    if (ft == F::kQ2_K) {
      t = T::kQ3_K;
    } else if (ft == F::kQ3_K_M) {
      t = T::kQ4_K;
    } else if (ft == F::kQ3_K_L) {
      t = T::kQ5_K;
    }
  } else if (Contains(name, "attn_qkv.weight")) {
    if (ft == F::kQ3_K_M || ft == F::kQ3_K_L) {
      t = T::kQ4_K;
    } else if (ft == F::kQ4_K_M) {
      t = T::kQ5_K;
    } else if (ft == F::kQ5_K_M) {
      t = T::kQ6_K;
    }
  }

  // Rows that are not a whole number of the type's blocks take llama.cpp's fallback type.
  if (cols % BlockElems(t) != 0) {
    switch (t) {
      case T::kQ2_K:
      case T::kQ3_K:
        t = T::kIQ4_NL;
        break;
      case T::kQ4_K:
        t = T::kQ5_0;
        break;
      case T::kQ5_K:
        t = T::kQ5_1;
        break;
      case T::kQ6_K:
        t = T::kQ8_0;
        break;
      default:
        throw Error("tensor " + name + ": rows of " + std::to_string(cols) +
                    " values are not a whole number of " + GgmlTypeName(t) + " blocks of " +
                    std::to_string(BlockElems(t)) + " (llama.cpp has no fallback for " +
                    GgmlTypeName(t) + ")");
    }
    if (cols % BlockElems(t) != 0) t = T::kF16;
  }
  return t;
}

}  // namespace awq
