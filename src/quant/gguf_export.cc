// QuantizeToGguf: the in-memory pipeline (QuantizeModel) with ggml types as the quantizers, then
// a GGUF file written tensor by tensor: a GGUF input's metadata and tensor order carried over, a
// Hugging Face folder's config and tokenizer written as llama.cpp's converter writes them.
#include "awq/gguf_export.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "awq/ggml_quantize.h"
#include "awq/gguf.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "awq/tokenizer.h"
#include "model/arch.h"
#include "quant/quantize_block.h"

namespace awq {

namespace {

namespace fs = std::filesystem;

// One tensor of the output: its declaration and how to make its bytes when it is written.
struct OutTensor {
  GgufTensorDecl decl;
  std::function<std::vector<uint8_t>()> bytes;
};

// rows x cols fp32 values stored as `type`.
std::vector<uint8_t> Encode(GgmlType type, const float* x, int64_t rows, int64_t cols) {
  std::vector<uint8_t> out(static_cast<size_t>(rows * GgmlRowBytes(type, cols)));
  QuantizeGgmlRows(type, x, rows, cols, out.data());
  return out;
}

// Rows permuted into llama.cpp's q/k order: output row i is input row order[i].
std::vector<uint8_t> PermuteRows(const std::vector<uint8_t>& in,
                                 const std::vector<int64_t>& order) {
  const size_t rows = order.size(), row_bytes = in.size() / rows;
  std::vector<uint8_t> out(in.size());
  for (size_t i = 0; i < rows; ++i) {
    std::memcpy(out.data() + i * row_bytes, in.data() + order[i] * row_bytes, row_bytes);
  }
  return out;
}

// A text whose ids tell tokenizers apart: digits, contractions, whitespace runs, accents,
// CJK, emoji and newlines.
constexpr const char* kTokenizerProbe =
    "Hello world! It's 2026-12-04, and 1234567 apples cost $3.50.\n\n  Indented\tline; "
    "caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E "
    "\xF0\x9F\x98\x80 I'LL we've   end.";

// general.* keys, the config's keys and the tokenizer's, for a Hugging Face folder; both read
// back (ConfigFromGguf in GgufConfigMetadata, Tokenizer::FromGguf here) before they are used.
GgufMetadata FolderMetadata(const std::string& dir, const ModelConfig& c,
                            const Tokenizer& tokenizer) {
  GgufMetadata kv = GgufConfigMetadata(c, dir + "/config.json");
  std::string name = fs::path(dir).lexically_normal().filename().string();
  if (name.empty()) name = fs::path(dir).lexically_normal().parent_path().filename().string();
  kv.insert(kv.begin() + 1, {"general.type", GgufString("model")});
  kv.insert(kv.begin() + 2, {"general.name", GgufString(name)});
  const GgufMetadata tok = TokenizerGgufMetadata(tokenizer, c.vocab_size);
  GgufWriter w;
  for (const auto& [key, value] : kv) w.AddMetadata(key, value);
  for (const auto& [key, value] : tok) w.AddMetadata(key, value);
  const std::string image = w.Serialize();
  const GgufFile back = GgufFile::Parse(reinterpret_cast<const uint8_t*>(image.data()),
                                        image.size(), tokenizer.source() + " (as GGUF)");
  const Tokenizer tok_back = Tokenizer::FromGguf(back);
  for (const bool special : {false, true}) {
    if (tokenizer.Encode(kTokenizerProbe, special) != tok_back.Encode(kTokenizerProbe, special)) {
      throw Error(tokenizer.source() +
                  ": the tokenizer's GGUF form (tokenizer.ggml.*) encodes text differently "
                  "from the tokenizer itself; it cannot be written to GGUF");
    }
  }
  kv.insert(kv.end(), tok.begin(), tok.end());
  return kv;
}

}  // namespace

QuantizeResult QuantizeToGguf(const std::string& model_path, const Tokenizer& tokenizer,
                              QuantizeOptions options, const GgufExportOptions& gguf,
                              const std::string& out_path) {
  if (options.method != QuantMethod::kAwq && options.method != QuantMethod::kRtn) {
    throw Error(std::string("--method ") + QuantMethodName(options.method) +
                " cannot write GGUF files; use awq or rtn");
  }
  std::error_code ec;
  if (fs::exists(model_path) && fs::exists(out_path) && fs::equivalent(model_path, out_path, ec)) {
    throw Error(out_path + ": the output is the input model; choose another output path");
  }
  if (fs::exists(out_path) && !gguf.overwrite) {
    throw Error(out_path + ": exists; pass --overwrite to replace it");
  }
  // A GGUF input keeps its metadata, tokenizer and tensor order; a Hugging Face folder's are
  // written from its config and tokenizer, checked by reading them back before any work.
  const bool from_gguf = !fs::is_directory(model_path);
  std::optional<GgufFile> input;
  if (from_gguf) input = GgufFile::Open(model_path);
  Model model = Model::Load(model_path, LoadOptions{.int4 = false});
  const ModelConfig& c = model.config();
  const Architecture& arch = ArchitectureOf(c);
  GgufMetadata folder_kv;
  if (!from_gguf) folder_kv = FolderMetadata(model_path, c, tokenizer);
  GgufRecipeModel rm;
  rm.n_layer = c.num_hidden_layers;
  rm.n_head = c.num_attention_heads;
  rm.n_head_kv = c.num_key_value_heads;
  rm.has_output = !c.tie_word_embeddings;
  const GgufFileType ft = gguf.file_type;
  const auto type_of = [&](const std::string& gguf_name, int64_t cols, int n_dims) {
    return GgufQuantizesTensor(gguf_name, n_dims) ? GgufTensorType(ft, gguf_name, cols, rm)
                                                  : GgmlType::kF32;
  };

  // Every linear's type, for the searches and the final rounding.
  options.ggml_types.clear();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (const LinearSpec& spec : arch.linears) {
      const std::string hf = LayerPrefix(l) + spec.name;
      if (!options.config.ParamsFor(hf)) continue;  // modules_to_not_convert: stays F32
      const RowRange r = SlotRows(c, spec.slot, spec.part);
      options.ggml_types[hf] = type_of(GgufTensorName(arch, hf + ".weight"), r.in, 2);
    }
  }
  QuantizeResult result = QuantizeModel(model, tokenizer, options);

  // The output's tensors by GGUF name.
  std::map<std::string, OutTensor> tensors;
  const ModelWeights& mw = model.weights();
  std::vector<std::string> natural;  // the order added: llama.cpp's converter's order
  const auto add_matrix = [&](const std::string& name, GgmlType type, const float* x, int64_t rows,
                              int64_t cols) {
    natural.push_back(name);
    OutTensor t;
    t.decl = {name, type, {cols, rows}, GgufTensorBytes(type, {cols, rows}, name)};
    t.bytes = [=] { return Encode(type, x, rows, cols); };
    tensors[name] = std::move(t);
  };
  const auto add_vector = [&](const std::string& name, const float* x, int64_t n, float add,
                              const std::vector<int64_t>* order) {
    natural.push_back(name);
    OutTensor t;
    t.decl = {name, GgmlType::kF32, {n}, static_cast<uint64_t>(n) * 4};
    t.bytes = [=] {
      std::vector<uint8_t> out(static_cast<size_t>(n) * 4);
      auto* f = reinterpret_cast<float*>(out.data());
      for (int64_t i = 0; i < n; ++i) f[i] = x[order != nullptr ? (*order)[i] : i] + add;
      return out;
    };
    tensors[name] = std::move(t);
  };
  // Gemma's norms are stored as 1 + w.
  const float norm_add = arch.gguf_norm_plus_one ? 1.0f : 0.0f;
  const int64_t d = c.hidden_size;
  add_matrix("token_embd.weight", type_of("token_embd.weight", d, 2), mw.embed.data<float>(),
             c.vocab_size, d);
  // q/k row orders (kept alive for the lambdas).
  std::vector<int64_t> q_order, k_order;
  if (arch.gguf_permuted_qk) {
    q_order = GgufQkRowOrder(SlotRows(c, Slot::kQkv, Part::kQ).rows, c.num_attention_heads);
    k_order = GgufQkRowOrder(SlotRows(c, Slot::kQkv, Part::kK).rows, c.num_key_value_heads);
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = mw.layers[static_cast<size_t>(l)];
    const std::string p = LayerPrefix(l);
    for (const auto& [name, t] : BlockNorms(arch, lw)) {
      if (*name == '\0' || t->empty()) continue;
      add_vector(GgufTensorName(arch, p + name + ".weight"), t->data<float>(), t->numel(), norm_add,
                 nullptr);
    }
    const Tensor* slots[] = {&lw.wqkv, &lw.wo, &lw.w_gate_up, &lw.w_down};
    for (const LinearSpec& spec : arch.linears) {
      const std::string hf = p + spec.name;
      const std::string name = GgufTensorName(arch, hf + ".weight");
      const RowRange r = SlotRows(c, spec.slot, spec.part);
      const std::vector<int64_t>* order = nullptr;
      if (arch.gguf_permuted_qk && spec.slot == Slot::kQkv && spec.part == Part::kQ) {
        order = &q_order;
      } else if (arch.gguf_permuted_qk && spec.slot == Slot::kQkv && spec.part == Part::kK) {
        order = &k_order;
      }
      natural.push_back(name);
      const auto it = result.ggml_linears.find(hf);
      if (it != result.ggml_linears.end()) {
        const GgmlTensor* g = &it->second;
        OutTensor t;
        t.decl = {name, g->type, {r.in, r.rows}, g->bytes.size()};
        t.bytes = [g, order] {
          return order != nullptr ? PermuteRows(g->bytes, *order) : g->bytes;
        };
        tensors[name] = std::move(t);
      } else {
        // Left in full precision (modules_to_not_convert).
        const float* w = slots[static_cast<size_t>(spec.slot)]->data<float>() + r.row0 * r.in;
        OutTensor t;
        t.decl = {name, GgmlType::kF32, {r.in, r.rows}, static_cast<uint64_t>(r.in * r.rows) * 4};
        const int64_t rows = r.rows, in = r.in;
        t.bytes = [=] {
          std::vector<uint8_t> raw(static_cast<size_t>(rows * in) * 4);
          std::memcpy(raw.data(), w, raw.size());
          return order != nullptr ? PermuteRows(raw, *order) : raw;
        };
        tensors[name] = std::move(t);
      }
      if (spec.slot == Slot::kQkv && !lw.bqkv.empty()) {
        add_vector(GgufTensorName(arch, hf + ".bias"), lw.bqkv.data<float>() + r.row0, r.rows, 0.0f,
                   order);
      }
    }
  }

  add_vector("output_norm.weight", mw.final_norm.data<float>(), d, norm_add, nullptr);
  if (!c.tie_word_embeddings) {
    add_matrix("output.weight", type_of("output.weight", d, 2), mw.lm_head.data<float>(),
               c.vocab_size, d);
  }

  // The input's order (llama-quantize keeps it); every input tensor must have its counterpart.
  std::vector<GgufTensorDecl> decls;
  std::vector<std::string> order;
  if (!from_gguf) order = natural;
  for (const GgufTensorInfo& info : from_gguf ? input->tensors() : std::vector<GgufTensorInfo>{}) {
    const auto it = tensors.find(info.name);
    if (it == tensors.end()) {
      throw Error(model_path + ": tensor " + info.name +
                  " has no counterpart in awq.cpp's model of this family; GGUF output would "
                  "drop it");
    }
    if (it->second.decl.ne.size() != info.ne.size() ||
        !std::equal(info.ne.begin(), info.ne.end(), it->second.decl.ne.begin())) {
      throw Error(model_path + ": tensor " + info.name + " has another shape than the model's");
    }
    order.push_back(info.name);
  }
  if (order.size() != tensors.size()) {
    std::set<std::string> seen(order.begin(), order.end());
    for (const auto& [name, t] : tensors) {
      if (!seen.count(name)) {
        throw Error(model_path + ": tensor " + name + " of the model is missing from the input");
      }
    }
  }
  for (const std::string& name : order) decls.push_back(tensors[name].decl);

  // The input's metadata, re-typed.
  GgufMetadata kv = std::move(folder_kv);
  for (const auto& [key, value] : from_gguf ? input->metadata() : GgufMetadata{}) {
    if (key == "general.file_type" || key == "general.quantization_version" ||
        key == "general.alignment" || key.rfind("quantize.", 0) == 0 || key.rfind("awq.", 0) == 0) {
      continue;
    }
    kv.emplace_back(key, value);
  }
  kv.emplace_back("general.quantization_version", GgufU32(2));
  kv.emplace_back("general.file_type", GgufU32(static_cast<uint32_t>(ft)));
  kv.emplace_back("awq.method", GgufString(QuantMethodName(options.method)));
  if (options.method == QuantMethod::kAwq) {
    kv.emplace_back("awq.calib_samples", GgufU32(static_cast<uint32_t>(result.calib_blocks)));
    kv.emplace_back("awq.calib_seq_len",
                    GgufU32(static_cast<uint32_t>(result.calib_tokens /
                                                  std::max<int64_t>(1, result.calib_blocks))));
    kv.emplace_back("awq.duo_scaling", GgufBool(options.config.duo_scaling));
    kv.emplace_back("awq.apply_clip", GgufBool(options.config.apply_clip));
  }

  const auto t0 = std::chrono::steady_clock::now();
  GgufStreamWriter w(out_path, kv, decls);
  for (const std::string& name : order) {
    const std::vector<uint8_t> bytes = tensors[name].bytes();
    w.Write(name, bytes.data(), bytes.size());
  }
  w.Finish();
  result.seconds.write +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace awq
