// QuantizeToGguf: the block walk (QuantizeBlock) with ggml types as the quantizers, streaming: one
// block's weights in memory at a time, each block written to the GGUF file as soon as it is
// final. A GGUF input's metadata carries over; a Hugging Face folder's config and tokenizer are
// written as llama.cpp's converter writes them.
#include "awq/gguf_export.h"
#include "kernels/cpu/sgemm.h"

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
#include "model/weight_source.h"
#include "quant/quantize_block.h"

namespace awq {

namespace {

namespace fs = std::filesystem;

// One tensor of the output: its declaration and how to make its bytes when it is written.
struct OutTensor {
  GgufTensorDecl decl;
  std::function<std::vector<uint8_t>()> bytes;
};

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

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

// An F32 vector, plus `add` (Gemma's 1 + w norms), in `order` when not null.
OutTensor Vector(const std::string& name, const float* x, int64_t n, float add,
                 const std::vector<int64_t>* order) {
  OutTensor t;
  t.decl = {name, GgmlType::kF32, {n}, static_cast<uint64_t>(n) * 4};
  t.bytes = [=] {
    std::vector<uint8_t> out(static_cast<size_t>(n) * 4);
    auto* f = reinterpret_cast<float*>(out.data());
    for (int64_t i = 0; i < n; ++i) f[i] = x[order != nullptr ? (*order)[i] : i] + add;
    return out;
  };
  return t;
}

// A sparse layer's tensors as llama.cpp stores them: the router (F32), each of gate, up and down
// with every expert stacked into one 3-D tensor [E, rows, in] of one type, and Qwen2-MoE's
// shared expert (2-D linears) and its gate (an F32 vector). The quantizer's blocks are used
// where it stored them, else the final weights are encoded.
template <typename TypeOf>
std::vector<OutTensor> MoeTensors(const ModelConfig& c, const Architecture& arch, int64_t l,
                                  const LayerWeights& lw, QuantizeResult& result,
                                  const TypeOf& linear_type) {
  std::vector<OutTensor> out;
  const std::string p = LayerPrefix(l);
  const int64_t d = c.hidden_size, n_experts = c.num_experts;
  const auto f32_matrix = [&](const std::string& hf, const Tensor& t, std::vector<int64_t> ne) {
    OutTensor o;
    const std::string name = GgufTensorName(arch, hf);
    uint64_t bytes = static_cast<uint64_t>(t.numel()) * 4;
    o.decl = {name, GgmlType::kF32, std::move(ne), bytes};
    const float* x = t.data<float>();
    const int64_t n = t.numel();
    o.bytes = [x, n] {
      std::vector<uint8_t> b(static_cast<size_t>(n) * 4);
      std::memcpy(b.data(), x, b.size());
      return b;
    };
    return o;
  };
  out.push_back(f32_matrix(p + arch.moe.router + ".weight", lw.router, {d, n_experts}));
  const std::vector<ExpertLinearSpec> specs = ExpertLinears(c, l);
  // The linears of each output tensor (every expert's, or the shared expert's one).
  std::map<std::string, std::vector<ExpertLinearSpec>> by_tensor;
  std::vector<std::string> order;
  for (const ExpertLinearSpec& e : specs) {
    const std::string name = GgufTensorName(arch, e.name + ".weight");
    if (by_tensor.find(name) == by_tensor.end()) order.push_back(name);
    by_tensor[name].push_back(e);
  }
  for (const std::string& name : order) {
    const std::vector<ExpertLinearSpec> parts = by_tensor[name];
    const ExpertLinearSpec& first = parts.front();
    const GgmlType type = linear_type(first.name);
    std::vector<int64_t> ne = {first.in, first.rows};
    if (first.expert != kSharedExpert) ne.push_back(static_cast<int64_t>(parts.size()));
    OutTensor o;
    o.decl = {name, type, ne, GgufTensorBytes(type, ne, name)};
    std::vector<const float*> weights;
    for (const ExpertLinearSpec& e : parts) weights.push_back(ExpertRows(lw, c, e));
    o.bytes = [&result, parts, weights, type] {
      std::vector<uint8_t> bytes;
      for (size_t i = 0; i < parts.size(); ++i) {
        const ExpertLinearSpec& e = parts[i];
        const auto it = result.ggml_linears.find(e.name);
        if (it != result.ggml_linears.end()) {
          bytes.insert(bytes.end(), it->second.bytes.begin(), it->second.bytes.end());
          result.ggml_linears.erase(it);
        } else {
          const std::vector<uint8_t> b = Encode(type, weights[i], e.rows, e.in);
          bytes.insert(bytes.end(), b.begin(), b.end());
        }
      }
      return bytes;
    };
    out.push_back(std::move(o));
  }
  if (!lw.shared_expert_gate.empty()) {
    out.push_back(Vector(GgufTensorName(arch, p + arch.moe.shared_gate + ".weight"),
                         lw.shared_expert_gate.data<float>(), d, 0.0f, nullptr));
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

// The input GGUF's metadata less the keys this file sets anew: the file type, the quantization
// version, the alignment, and the keys of an earlier quantization (quantize.*, awq.*).
GgufMetadata InputMetadata(const GgufFile& input) {
  GgufMetadata kv;
  for (const auto& [key, value] : input.metadata()) {
    if (key == "general.file_type" || key == "general.quantization_version" ||
        key == "general.alignment" || key.rfind("quantize.", 0) == 0 || key.rfind("awq.", 0) == 0) {
      continue;
    }
    kv.emplace_back(key, value);
  }
  return kv;
}

// Every tensor of a GGUF input has its counterpart, of the same shape, in the output and back.
void CheckSameTensors(const std::string& path, const GgufFile& input,
                      const std::vector<GgufTensorDecl>& decls) {
  std::map<std::string, const GgufTensorDecl*> out;
  for (const GgufTensorDecl& t : decls) out[t.name] = &t;
  for (const GgufTensorInfo& info : input.tensors()) {
    const auto it = out.find(info.name);
    if (it == out.end()) {
      throw Error(path + ": tensor " + info.name +
                  " has no counterpart in awq.cpp's model of this family; GGUF output would "
                  "drop it");
    }
    if (it->second->ne != info.ne) {
      throw Error(path + ": tensor " + info.name + " has another shape than the model's");
    }
    out.erase(it);
  }
  if (!out.empty()) {
    throw Error(path + ": tensor " + out.begin()->first +
                " of the model is missing from the input");
  }
}

}  // namespace

QuantizeResult QuantizeToGguf(const std::string& model_path, const Tokenizer& tokenizer,
                              QuantizeOptions options, const GgufExportOptions& gguf,
                              const std::string& out_path) {
  ActiveSgemmPath();  // a bad AWQ_SGEMM is an error before any output exists
  const auto t_start = Clock::now();
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
  // A GGUF input keeps its metadata and tokenizer; a Hugging Face folder's are written from its
  // config and tokenizer, checked by reading them back before any work.
  const bool from_gguf = !fs::is_directory(model_path);
  std::optional<GgufFile> input;
  if (from_gguf) input = GgufFile::Open(model_path);
  // One block's weights in memory at a time, read from the mapped input.
  Model model = Model::OpenStreaming(model_path);
  const WeightSource& src = *model.source();
  const ModelConfig& c = model.config();
  const Architecture& arch = ArchitectureOf(c);
  GgufMetadata kv = from_gguf ? InputMetadata(*input) : FolderMetadata(model_path, c, tokenizer);
  GgufRecipeModel rm;
  rm.n_layer = c.num_hidden_layers;
  rm.n_head = c.num_attention_heads;
  rm.n_head_kv = c.num_key_value_heads;
  rm.has_output = !c.tie_word_embeddings;
  rm.n_expert = c.num_experts;
  const GgufFileType ft = gguf.file_type;
  const auto type_of = [&](const std::string& gguf_name, int64_t cols, int n_dims) {
    return GgufQuantizesTensor(gguf_name, n_dims) ? GgufTensorType(ft, gguf_name, cols, rm)
                                                  : GgmlType::kF32;
  };

  // Every linear's type, for the searches and the final rounding; F32 where the config leaves
  // it unconverted (modules_to_not_convert).
  options.ggml_types.clear();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (const LinearSpec& spec : arch.linears) {
      const std::string hf = LayerPrefix(l) + spec.name;
      if (!options.config.ParamsFor(hf)) continue;
      if (c.IsMoeLayer(l) && (spec.slot == Slot::kGateUp || spec.slot == Slot::kDown)) continue;
      const RowRange r = SlotRows(c, spec.slot, spec.part);
      options.ggml_types[hf] = type_of(GgufTensorName(arch, hf + ".weight"), r.in, 2);
    }
    // Experts: one type per stacked tensor (3-D), shared by its experts.
    for (const ExpertLinearSpec& e : ExpertLinears(c, l)) {
      if (!options.config.ParamsFor(e.name)) continue;
      options.ggml_types[e.name] = type_of(GgufTensorName(arch, e.name + ".weight"), e.in,
                                           e.expert == kSharedExpert ? 2 : 3);
    }
  }
  CheckLinearShapes(c, options);
  const auto linear_type = [&](const std::string& hf) {
    const auto it = options.ggml_types.find(hf);
    return it == options.ggml_types.end() ? GgmlType::kF32 : it->second;
  };

  // q/k row orders of llama.cpp's interleaved rope.
  std::vector<int64_t> q_order, k_order;
  if (arch.gguf_permuted_qk) {
    q_order = GgufQkRowOrder(SlotRows(c, Slot::kQkv, Part::kQ).rows, c.num_attention_heads);
    k_order = GgufQkRowOrder(SlotRows(c, Slot::kQkv, Part::kK).rows, c.num_key_value_heads);
  }
  const auto row_order = [&](const LinearSpec& spec) -> const std::vector<int64_t>* {
    if (!arch.gguf_permuted_qk || spec.slot != Slot::kQkv) return nullptr;
    if (spec.part == Part::kQ) return &q_order;
    if (spec.part == Part::kK) return &k_order;
    return nullptr;
  };
  // Gemma's norms are stored as 1 + w.
  const float norm_add = arch.gguf_norm_plus_one ? 1.0f : 0.0f;
  const int64_t d = c.hidden_size;

  // A block's tensors in llama.cpp's converter's order (norms, then each linear with its bias),
  // their bytes made from the block's weights (`lw`, loaded) and the quantizer's blocks.
  QuantizeResult result;
  result.method = options.method;
  const auto block_tensors = [&](int64_t l, const LayerWeights& lw) {
    std::vector<OutTensor> out;
    const std::string p = LayerPrefix(l);
    for (const auto& [name, t] : BlockNorms(arch, lw)) {
      if (*name == '\0' || t->empty()) continue;
      out.push_back(Vector(GgufTensorName(arch, p + name + ".weight"), t->data<float>(), t->numel(),
                           norm_add, nullptr));
    }
    const Tensor* slots[] = {&lw.wqkv, &lw.wo, &lw.w_gate_up, &lw.w_down};
    const bool moe = c.IsMoeLayer(l);
    for (const LinearSpec& spec : arch.linears) {
      if (moe && (spec.slot == Slot::kGateUp || spec.slot == Slot::kDown)) continue;
      const std::string hf = p + spec.name;
      const std::string name = GgufTensorName(arch, hf + ".weight");
      const RowRange r = SlotRows(c, spec.slot, spec.part);
      const std::vector<int64_t>* order = row_order(spec);
      const GgmlType type = linear_type(hf);
      OutTensor t;
      t.decl = {name, type, {r.in, r.rows}, GgufTensorBytes(type, {r.in, r.rows}, name)};
      const Tensor* slot = slots[static_cast<size_t>(spec.slot)];
      t.bytes = [&result, hf, type, slot, r, order] {
        // The quantizer's blocks where it stored them (block types), else the weights encoded.
        std::vector<uint8_t> bytes;
        const auto it = result.ggml_linears.find(hf);
        if (it != result.ggml_linears.end()) {
          bytes = std::move(it->second.bytes);
          result.ggml_linears.erase(it);
        } else {
          bytes = Encode(type, slot->data<float>() + r.row0 * r.in, r.rows, r.in);
        }
        return order != nullptr ? PermuteRows(bytes, *order) : bytes;
      };
      out.push_back(std::move(t));
      if (spec.slot == Slot::kQkv && !lw.bqkv.empty()) {
        out.push_back(Vector(GgufTensorName(arch, hf + ".bias"), lw.bqkv.data<float>() + r.row0,
                             r.rows, 0.0f, order));
      }
    }
    if (moe) {
      for (OutTensor& t : MoeTensors(c, arch, l, lw, result, linear_type))
        out.push_back(std::move(t));
    }
    return out;
  };

  // Every tensor is declared up front (the header comes first); block 0's layout (which norms
  // and biases the model has) stands for every block's.
  const ModelWeights& mw = model.weights();
  const GgmlType embd_type = type_of("token_embd.weight", d, 2);
  const GgmlType out_type = type_of("output.weight", d, 2);
  std::vector<GgufTensorDecl> decls;
  decls.push_back({"token_embd.weight",
                   embd_type,
                   {d, c.vocab_size},
                   GgufTensorBytes(embd_type, {d, c.vocab_size}, "token_embd.weight")});
  model.LoadBlock(0);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (const OutTensor& t : block_tensors(l, mw.layers[0])) decls.push_back(t.decl);
  }
  model.ReleaseBlock(0);
  decls.push_back({"output_norm.weight", GgmlType::kF32, {d}, static_cast<uint64_t>(d) * 4});
  if (!c.tie_word_embeddings) {
    decls.push_back({"output.weight",
                     out_type,
                     {d, c.vocab_size},
                     GgufTensorBytes(out_type, {d, c.vocab_size}, "output.weight")});
  }
  if (from_gguf) CheckSameTensors(model_path, *input, decls);

  CalibrationActivations acts = StartCalibration(c, tokenizer, options, result);
  kv.emplace_back("general.quantization_version", GgufU32(2));
  kv.emplace_back("general.file_type", GgufU32(static_cast<uint32_t>(ft)));
  kv.emplace_back("awq.method", GgufString(QuantMethodName(options.method)));
  if (options.method == QuantMethod::kAwq) {
    kv.emplace_back("awq.calib_samples", GgufU32(static_cast<uint32_t>(result.calib_blocks)));
    kv.emplace_back("awq.calib_seq_len", GgufU32(static_cast<uint32_t>(acts.seq_len)));
    kv.emplace_back("awq.duo_scaling", GgufBool(options.config.duo_scaling));
    kv.emplace_back("awq.apply_clip", GgufBool(options.config.apply_clip));
  }

  // The file: header, embedding, each block as soon as it is final, final norm and head.
  GgufStreamWriter w(out_path, kv, decls);
  const auto write = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
    const auto t0 = Clock::now();
    w.Write(name, bytes.data(), bytes.size());
    result.seconds.write += Since(t0);
  };
  // The streaming model keeps the embedding as stored (a view of an F16/BF16 file).
  write("token_embd.weight",
        Encode(embd_type,
               mw.embed.dtype() == DType::kF32 ? mw.embed.data<float>()
                                               : mw.embed.ToF32().data<float>(),
               c.vocab_size, d));
  if (options.method != QuantMethod::kRtn) {
    const auto t0 = Clock::now();
    EmbedCalibration(model, acts);
    result.seconds.calibration += Since(t0);
  }
  src.ReleasePages("model.embed_tokens.weight");
  std::map<std::string, QuantizedLinear> codes;  // integer codes: none with ggml types
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    model.LoadBlock(l);
    QuantizeBlock(model, l, options, acts, codes, result);
    for (const OutTensor& t : block_tensors(l, mw.layers[static_cast<size_t>(l)])) {
      write(t.decl.name, t.bytes());
    }
    model.ReleaseBlock(l);
    if (options.progress) options.progress(l + 1, c.num_hidden_layers);
  }
  acts = {};
  const OutTensor norm =
      Vector("output_norm.weight", mw.final_norm.data<float>(), d, norm_add, nullptr);
  write(norm.decl.name, norm.bytes());
  if (!c.tie_word_embeddings) {
    const Tensor head = src.GetF32("lm_head.weight");
    write("output.weight", Encode(out_type, head.data<float>(), c.vocab_size, d));
  }
  const auto t0 = Clock::now();
  w.Finish();
  result.seconds.write += Since(t0);
  result.seconds.total = Since(t_start);
  result.peak_rss_bytes = PeakRssBytes();
  return result;
}

}  // namespace awq
