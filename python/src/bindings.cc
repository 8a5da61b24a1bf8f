// The _awqcpp extension module: nanobind bindings of awq_lib (models, tokenizers, quantization,
// evaluation, checkpoint inspection) that python/awqcpp/ builds AutoAWQ's API on (docs/PYTHON.md).
// Long calls run with the GIL released; their progress callbacks take it back to run Python
// signal handlers and the caller's callable, so Ctrl-C stops them at the next block or window.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <pthread.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "awq/activation_stats.h"
#include "awq/awq_checkpoint.h"
#include "awq/calibration.h"
#include "awq/error.h"
#include "awq/eval.h"
#include "awq/gguf.h"
#include "awq/int4_kernels.h"
#include "awq/metrics.h"
#include "awq/model.h"
#include "awq/model_config.h"
#include "awq/quant_config.h"
#include "awq/quantize.h"
#include "awq/quantizer.h"
#include "awq/quantizer_api.h"
#include "awq/safetensors.h"
#include "awq/sampling.h"
#include "awq/thread_pool.h"
#include "awq/tokenizer.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace awq::python {
namespace {

using Ids = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Progress = std::function<void(int64_t, int64_t)>;

// awqcpp.AwqError: what awq::Error carries (a bad file, option or shape, named as the CLI names
// it). It derives from both ValueError and RuntimeError so that code catching either sees it.
PyObject* g_awq_error = nullptr;

// nb::gil_scoped_release for a long library call, with SIGINT held back from this thread until
// the call ends or reaches a progress callback (PyProgress lets it in there). The kernel then
// delivers Ctrl-C to another thread of the process (the pool's workers take none), and Python's
// handler only sets its flag: no handler runs in the middle of the library's kernels, where one
// has been seen to corrupt the heap (an os.kill from a Python thread, as
// test_sigint_stops_quantize_and_the_model_reloads sends, about one run in five).
class ReleaseGil {
 public:
  ReleaseGil() {
    sigset_t interrupt;
    sigemptyset(&interrupt);
    sigaddset(&interrupt, SIGINT);
    pthread_sigmask(SIG_BLOCK, &interrupt, &old_);
  }
  // A SIGINT that arrived meanwhile is delivered here, before the GIL is taken back.
  ~ReleaseGil() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  ReleaseGil(const ReleaseGil&) = delete;
  ReleaseGil& operator=(const ReleaseGil&) = delete;

 private:
  nb::gil_scoped_release release_;
  sigset_t old_;
};

// A Python callable (or None) as a library progress callback. The long call runs with the GIL
// released; each call takes it back, runs pending signal handlers (Ctrl-C raises
// KeyboardInterrupt there) and then the callable. A Python exception is thrown as
// nb::python_error, which unwinds the library call (its writers only rename complete outputs
// into place) and reaches the caller as the original exception. The callable is borrowed: the
// caller's argument keeps it alive for the whole call, and copies of the std::function stay
// cheap without the GIL.
Progress PyProgress(nb::handle callback) {
  PyObject* fn = callback.is_none() ? nullptr : callback.ptr();
  return [fn](int64_t done, int64_t total) {
    nb::gil_scoped_acquire gil;
    // Let a SIGINT held back by ReleaseGil in, so that its handler runs now.
    sigset_t interrupt, old;
    sigemptyset(&interrupt);
    sigaddset(&interrupt, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &interrupt, &old);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
    if (fn != nullptr) {
      const nb::handle callable(fn);
      callable(done, total);
    }
  };
}

std::vector<int32_t> ToVector(const Ids& ids) {
  return std::vector<int32_t>(ids.data(), ids.data() + ids.shape(0));
}

// A numpy array owning `v`'s contents, shape `shape`.
template <typename T>
nb::ndarray<nb::numpy, T> ToNumpy(std::vector<T>&& v, std::vector<size_t> shape) {
  auto* heap = new std::vector<T>(std::move(v));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(heap->data(), shape.size(), shape.data(), owner);
}

// assets/text/<name>.txt of the source tree the module was built from, or of $AWQ_ASSETS_DIR:
// the CLI's default texts.
std::string DefaultTextPath(const std::string& name) {
  const char* env = std::getenv("AWQ_ASSETS_DIR");
  const std::string assets = env ? env : std::string(AWQ_SOURCE_DIR) + "/assets";
  return assets + "/text/" + name + ".txt";
}

// A QuantConfig from the "default" preset (AutoAWQ's w4 g128 zero point GEMM) with the keys of a
// JSON object applied, as `awq quantize --config` applies a file; errors name `source` and the key.
QuantConfig ConfigFromJson(const std::string& json_text, const std::string& source) {
  QuantConfig c = QuantPreset("default");
  ParseQuantOverrides(json_text, source, &c);
  return c;
}

nb::dict ConfigDict(const QuantConfig& c) {
  nb::dict d;
  d["w_bit"] = c.w_bit;
  d["q_group_size"] = c.q_group_size;
  d["zero_point"] = c.zero_point;
  d["version"] = c.version;
  d["duo_scaling"] = c.duo_scaling;
  d["apply_clip"] = c.apply_clip;
  d["n_grid"] = c.n_grid;
  d["max_shrink"] = c.max_shrink;
  d["n_sample_token"] = c.n_sample_token;
  d["max_calib_samples"] = c.max_calib_samples;
  d["max_calib_seq_len"] = c.max_calib_seq_len;
  d["modules_to_not_convert"] = c.modules_to_not_convert;
  return d;
}

nb::dict MetricsDict(const TensorMetrics& m) {
  nb::dict d;
  d["count"] = m.count;
  d["mse"] = m.mse;
  d["relative_error"] = m.relative_error;
  d["correlation"] = m.correlation;
  d["max_abs_error"] = m.max_abs_error;
  return d;
}

nb::dict SizeDict(const SizeMetrics& s) {
  nb::dict d;
  d["parameters"] = s.parameters;
  d["fp16_bytes"] = s.fp16_bytes;
  d["fp32_bytes"] = s.fp32_bytes;
  d["stored_bytes"] = s.stored_bytes;
  d["ratio_vs_fp16"] = s.ratio();
  d["saved_bytes_vs_fp16"] = s.saved_bytes();
  d["bits_per_weight"] = s.bits_per_weight();
  return d;
}

nb::dict ComparisonDict(const OutputComparison& c) {
  nb::dict d;
  d["n_windows"] = c.n_windows;
  d["n_positions"] = c.n_positions;
  d["ppl_reference"] = c.ppl_reference;
  d["ppl_quantized"] = c.ppl_quantized;
  d["ppl_ratio"] = c.ppl_quantized / c.ppl_reference;
  d["mean_kl"] = c.mean_kl;
  d["max_kl"] = c.max_kl;
  d["top1_agreement"] = c.top1_agreement;
  d["logits"] = MetricsDict(c.logits);
  d["seconds"] = c.seconds;
  return d;
}

nb::dict ReportDict(const ValidationReport& r) {
  nb::list checks;
  for (const ThresholdCheck& k : r.checks) {
    nb::dict c;
    c["metric"] = k.metric;
    c["value"] = k.value;
    c["threshold"] = k.threshold;
    c["kind"] = k.is_max ? "max" : "min";
    c["passed"] = k.passed;
    checks.append(c);
  }
  nb::dict d;
  d["passed"] = r.passed;
  d["checks"] = checks;
  d["reasons"] = r.reasons;
  return d;
}

// A finished in-memory quantization: what SaveQuantizedModel needs besides the model.
struct QuantizeRun {
  QuantizeResult result;
  QuantConfig config;
};

nb::dict ResultDict(const QuantizeResult& r) {
  nb::list blocks;
  for (const BlockReport& b : r.blocks) {
    nb::list groups;
    for (const BlockReport::Group& g : b.groups) {
      nb::dict gd;
      gd["name"] = g.name;
      gd["best_index"] = g.best_index;
      gd["best_loss"] = g.best_loss;
      gd["identity_loss"] = g.identity_loss;
      groups.append(gd);
    }
    nb::dict bd;
    bd["layer"] = b.layer;
    bd["groups"] = groups;
    blocks.append(bd);
  }
  const StageSeconds& s = r.seconds;
  nb::dict sec;
  sec["total"] = s.total;
  sec["calibration"] = s.calibration;
  sec["capture"] = s.capture;
  sec["scale_search"] = s.scale_search;
  sec["clip_search"] = s.clip_search;
  sec["quantize"] = s.quantize;
  sec["gptq"] = s.gptq;
  sec["write"] = s.write;
  nb::dict d;
  d["method"] = QuantMethodName(r.method);
  d["calib_blocks"] = r.calib_blocks;
  d["calib_tokens"] = r.calib_tokens;
  d["quantized_linears"] = r.linears.size();
  d["peak_rss_bytes"] = r.peak_rss_bytes;
  d["resumed_blocks"] = r.resumed_blocks;
  d["seconds"] = sec;
  d["blocks"] = blocks;
  return d;
}

QuantizeOptions MakeOptions(const std::string& config_json, const std::string& method,
                            const std::string& calib_data, uint64_t activation_budget_bytes,
                            nb::handle progress) {
  QuantizeOptions opt;
  opt.method = ParseQuantMethod(method);
  opt.config = ConfigFromJson(config_json, "quant_config");
  opt.calib_data = calib_data;
  opt.activation_budget_bytes = activation_budget_bytes;
  opt.progress = PyProgress(progress);
  return opt;
}

// Greedy or sampled continuation of `prompt` from a fresh cache: the new ids, the stop token
// included when one ended it (as transformers' generate returns it).
std::vector<int32_t> Generate(const Model& model, const std::vector<int32_t>& prompt,
                              int64_t max_new_tokens, const SamplingParams& sampling,
                              const std::vector<int32_t>& stop_ids, int64_t ctx,
                              nb::handle on_token) {
  if (prompt.empty()) throw Error("the prompt is empty after tokenization");
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (ctx <= 0) ctx = std::min<int64_t>(model.config().max_position_embeddings, n + max_new_tokens);
  if (n >= ctx) {
    throw Error("the prompt has " + std::to_string(n) + " tokens, which fills the " +
                std::to_string(ctx) + "-token context");
  }
  const Progress tick = PyProgress(on_token);
  KvCache cache = model.NewCache(ctx);
  Sampler sampler(sampling);
  const int64_t d = model.config().hidden_size, v = model.config().vocab_size;
  std::vector<float> hidden(static_cast<size_t>(n * d)), logits(static_cast<size_t>(v));
  model.Forward(prompt.data(), n, cache, hidden.data());
  model.Logits(hidden.data() + (n - 1) * d, 1, logits.data());
  std::vector<int32_t> out;
  while (static_cast<int64_t>(out.size()) < max_new_tokens && cache.size() < ctx) {
    const int32_t next = sampler.Sample(logits.data(), v);
    out.push_back(next);
    tick(next, static_cast<int64_t>(out.size()));
    if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) break;
    if (static_cast<int64_t>(out.size()) == max_new_tokens || cache.size() >= ctx) break;
    model.Forward(&next, 1, cache, hidden.data());
    model.Logits(hidden.data(), 1, logits.data());
  }
  return out;
}

void BindTokenizer(nb::module_& m) {
  nb::class_<Tokenizer>(m, "Tokenizer",
                        "A model's tokenizer (GGUF metadata or tokenizer.json), as awq.cpp runs it")
      .def_static("load", &Tokenizer::ForModel, "model_path"_a,
                  "From a .gguf file's metadata or a folder's tokenizer.json")
      .def(
          "encode",
          [](const Tokenizer& t, const std::string& text, bool add_special, bool parse_special) {
            return t.Encode(text, add_special, parse_special);
          },
          "text"_a, "add_special"_a = true, "parse_special"_a = false)
      .def(
          "decode",
          [](const Tokenizer& t, const std::vector<int32_t>& ids, bool skip_special) {
            return t.Decode(ids, skip_special);
          },
          "ids"_a, "skip_special"_a = false)
      .def(
          "apply_chat_template",
          [](const Tokenizer& t, const std::vector<std::pair<std::string, std::string>>& messages,
             bool add_generation_prompt) {
            std::vector<ChatMessage> ms;
            for (const auto& [role, content] : messages) ms.push_back({role, content});
            return t.ApplyChatTemplate(ms, add_generation_prompt);
          },
          "messages"_a, "add_generation_prompt"_a = true,
          "Renders [(role, content), ...] with the model's chat template")
      .def(
          "token_to_id",
          [](const Tokenizer& t, const std::string& piece) { return t.TokenId(piece); }, "piece"_a)
      .def("id_to_token", &Tokenizer::TokenText, "id"_a)
      .def("save", &WriteHfTokenizerFiles, "dir"_a,
           "Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json")
      .def_prop_ro("bos_id", &Tokenizer::bos_id)
      .def_prop_ro("eos_id", &Tokenizer::eos_id)
      .def_prop_ro("pad_id", &Tokenizer::pad_id)
      .def_prop_ro("eos_ids", &Tokenizer::eos_ids)
      .def_prop_ro("vocab_size", &Tokenizer::vocab_size)
      .def_prop_ro("add_bos", &Tokenizer::add_bos)
      .def_prop_ro("chat_template", &Tokenizer::chat_template)
      .def_prop_ro("source", &Tokenizer::source);
}

void BindModel(nb::module_& m) {
  nb::class_<QuantizeRun>(m, "QuantizeRun", "The codes and report of Model.quantize")
      .def_prop_ro("report", [](const QuantizeRun& r) { return ResultDict(r.result); })
      .def_prop_ro("config", [](const QuantizeRun& r) { return ConfigDict(r.config); });

  nb::class_<Model>(m, "Model", "A loaded model (GGUF file or Hugging Face folder)")
      .def_static(
          "load",
          [](const std::string& path, bool int4, bool int8_lm_head) {
            ReleaseGil release;
            return Model::Load(path, LoadOptions{.int4 = int4, .int8_lm_head = int8_lm_head});
          },
          "path"_a, "int4"_a = true, "int8_lm_head"_a = false,
          "int4=False loads every weight in fp32 (what quantization needs)")
      .def_prop_ro("config_json", [](const Model& md) { return HfConfigToJson(md.config()); })
      .def_prop_ro("parameter_count", &Model::ParameterCount)
      .def_prop_ro("num_layers", [](const Model& md) { return md.config().num_hidden_layers; })
      .def_prop_ro("vocab_size", [](const Model& md) { return md.config().vocab_size; })
      .def_prop_ro("uses_int4", &Model::uses_int4)
      .def(
          "logits",
          [](const Model& md, const Ids& ids) {
            const std::vector<int32_t> t = ToVector(ids);
            if (t.empty()) throw Error("logits: no tokens");
            const int64_t n = static_cast<int64_t>(t.size());
            const int64_t d = md.config().hidden_size, v = md.config().vocab_size;
            std::vector<float> logits(static_cast<size_t>(n * v));
            {
              ReleaseGil release;
              KvCache cache = md.NewCache(n);
              std::vector<float> hidden(static_cast<size_t>(n * d));
              md.Forward(t.data(), n, cache, hidden.data());
              md.Logits(hidden.data(), n, logits.data());
            }
            return ToNumpy(std::move(logits), {static_cast<size_t>(n), static_cast<size_t>(v)});
          },
          "ids"_a, "Logits [n, vocab] of every position of ids run from a fresh context")
      .def(
          "generate",
          [](const Model& md, const Ids& ids, int64_t max_new_tokens, float temperature, int top_k,
             float top_p, uint64_t seed, const std::vector<int32_t>& stop_ids, int64_t ctx,
             nb::handle on_token) {
            const std::vector<int32_t> prompt = ToVector(ids);
            const SamplingParams sp{temperature, top_k, top_p, seed};
            ReleaseGil release;
            return Generate(md, prompt, max_new_tokens, sp, stop_ids, ctx, on_token);
          },
          "ids"_a, "max_new_tokens"_a, "temperature"_a = 0.0f, "top_k"_a = 0, "top_p"_a = 1.0f,
          "seed"_a = 0, "stop_ids"_a = std::vector<int32_t>{}, "ctx"_a = 0,
          "on_token"_a = nb::none(), "The new token ids; on_token(id, count) is called after each")
      .def(
          "perplexity",
          [](const Model& md, const Ids& ids, int64_t ctx, int64_t max_tokens,
             const std::string& protocol, int32_t bos_id, nb::handle progress) {
            const std::vector<int32_t> t = ToVector(ids);
            PerplexityOptions opt;
            opt.ctx = ctx;
            opt.max_tokens = max_tokens;
            opt.protocol = ParsePerplexityProtocol(protocol);
            opt.bos_id = bos_id;
            opt.progress = PyProgress(progress);
            PerplexityResult r;
            {
              ReleaseGil release;
              r = EvaluatePerplexity(md, t, opt);
            }
            nb::dict d;
            d["perplexity"] = r.perplexity;
            d["nll_sum"] = r.nll_sum;
            d["n_predicted"] = r.n_predicted;
            d["n_windows"] = r.n_windows;
            d["n_tokens"] = r.n_tokens;
            d["seconds"] = r.seconds;
            d["tokens_per_second"] = r.tokens_per_second;
            return d;
          },
          "ids"_a, "ctx"_a = 2048, "max_tokens"_a = -1, "protocol"_a = "awq", "bos_id"_a = -1,
          "progress"_a = nb::none())
      .def(
          "quantize",
          [](Model& md, const Tokenizer& tok, const std::string& config_json,
             const std::string& method, const std::string& calib_data,
             uint64_t activation_budget_bytes, nb::handle progress) {
            QuantizeOptions opt =
                MakeOptions(config_json, method, calib_data, activation_budget_bytes, progress);
            auto run = std::make_unique<QuantizeRun>();
            run->config = opt.config;
            {
              ReleaseGil release;
              run->result = QuantizeModel(md, tok, opt);
            }
            return run;
          },
          "tokenizer"_a, "config_json"_a, "method"_a = "awq", "calib_data"_a = "",
          "activation_budget_bytes"_a = uint64_t{256} << 20, "progress"_a = nb::none(),
          "Quantizes the fp32 model in place (QuantizeModel); the model then runs the "
          "dequantized weights")
      .def(
          "save_quantized",
          [](const Model& md, const QuantizeRun& run, const Tokenizer* tok, const std::string& dir,
             uint64_t max_shard_bytes, bool overwrite) {
            ReleaseGil release;
            SaveQuantizedModel(md, run.result, run.config, tok, dir, max_shard_bytes, overwrite);
          },
          "run"_a, "tokenizer"_a.none(), "dir"_a, "max_shard_bytes"_a, "overwrite"_a = false);
}

void BindFunctions(nb::module_& m) {
  m.def(
      "quantize_to_folder",
      [](const std::string& model_path, const Tokenizer& tok, const std::string& out,
         const std::string& config_json, const std::string& method, const std::string& calib_data,
         uint64_t max_shard_bytes, bool overwrite, uint64_t activation_budget_bytes,
         nb::handle progress) {
        QuantizeOptions opt =
            MakeOptions(config_json, method, calib_data, activation_budget_bytes, progress);
        QuantizeResult r;
        {
          ReleaseGil release;
          r = QuantizeToFolder(model_path, tok, opt, out, max_shard_bytes, overwrite);
        }
        return ResultDict(r);
      },
      "model_path"_a, "tokenizer"_a, "out"_a, "config_json"_a, "method"_a = "awq",
      "calib_data"_a = "", "max_shard_bytes"_a = uint64_t{5000000000}, "overwrite"_a = false,
      "activation_budget_bytes"_a = uint64_t{256} << 20, "progress"_a = nb::none(),
      "The streaming quantization of `awq quantize`: one block in memory, staged in OUT.partial");
  m.def(
      "compare_outputs",
      [](const Model& ref, const Model& q, const Ids& ids, int64_t ctx, int64_t max_tokens,
         nb::handle progress) {
        const std::vector<int32_t> t = ToVector(ids);
        OutputComparisonOptions opt;
        opt.ctx = ctx;
        opt.max_tokens = max_tokens;
        opt.progress = PyProgress(progress);
        OutputComparison c;
        {
          ReleaseGil release;
          c = CompareModelOutputs(ref, q, t, opt);
        }
        return ComparisonDict(c);
      },
      "reference"_a, "quantized"_a, "ids"_a, "ctx"_a = 512, "max_tokens"_a = -1,
      "progress"_a = nb::none());
  m.def(
      "validate_outputs",
      [](const nb::dict& cmp, std::optional<double> max_mse,
         std::optional<double> max_relative_error, std::optional<double> min_correlation,
         std::optional<double> max_kl, std::optional<double> min_top1,
         std::optional<double> max_ppl_ratio) {
        // The comparison's numbers as compare_outputs returned them.
        OutputComparison c;
        const nb::dict logits = nb::cast<nb::dict>(cmp["logits"]);
        c.logits.mse = nb::cast<double>(logits["mse"]);
        c.logits.relative_error = nb::cast<double>(logits["relative_error"]);
        c.logits.correlation = nb::cast<double>(logits["correlation"]);
        c.logits.max_abs_error = nb::cast<double>(logits["max_abs_error"]);
        c.mean_kl = nb::cast<double>(cmp["mean_kl"]);
        c.top1_agreement = nb::cast<double>(cmp["top1_agreement"]);
        c.ppl_reference = nb::cast<double>(cmp["ppl_reference"]);
        c.ppl_quantized = nb::cast<double>(cmp["ppl_quantized"]);
        OutputThresholds th;
        th.logits.max_mse = max_mse;
        th.logits.max_relative_error = max_relative_error;
        th.logits.min_correlation = min_correlation;
        th.max_kl = max_kl;
        th.min_top1 = min_top1;
        th.max_ppl_ratio = max_ppl_ratio;
        return ReportDict(ValidateOutputs(c, th));
      },
      "comparison"_a, "max_mse"_a.none() = nb::none(), "max_relative_error"_a.none() = nb::none(),
      "min_correlation"_a.none() = nb::none(), "max_kl"_a.none() = nb::none(),
      "min_top1"_a.none() = nb::none(), "max_ppl_ratio"_a.none() = nb::none());
  m.def(
      "measure_checkpoint",
      [](const std::string& path) {
        CheckpointSizes s;
        {
          ReleaseGil release;
          s = MeasureCheckpointSizes(path);
        }
        nb::list entries;
        for (const CheckpointEntry& e : s.entries) {
          nb::dict d;
          d["name"] = e.name;
          d["quantized"] = e.quantized;
          d["bits"] = e.bits;
          d["group_size"] = e.group_size;
          d["dtype"] = e.dtype;
          d["shape"] = std::vector<int64_t>(e.shape.begin(), e.shape.end());
          d["size"] = SizeDict(e.size);
          entries.append(d);
        }
        nb::dict d;
        d["path"] = s.path;
        d["format"] = s.format;
        d["entries"] = entries;
        d["quantized"] = SizeDict(s.quantized);
        d["other"] = SizeDict(s.other);
        d["total"] = SizeDict(s.total);
        return d;
      },
      "path"_a, "Sizes of every tensor of a checkpoint folder or GGUF file, as stored");
  m.def(
      "read_quant_config",
      [](const std::string& dir) -> nb::object {
        const std::optional<QuantConfig> qc = ReadAwqQuantConfig(dir);
        if (!qc) return nb::none();
        return ConfigDict(*qc);
      },
      "dir"_a, "The quantization settings of an AWQ checkpoint folder, or None");
  m.def(
      "compare_linears",
      [](const Model& ref, const Model& q, const Tokenizer& tok, const std::string& calib_data,
         int64_t max_samples) {
        std::vector<LinearComparison> cs;
        {
          ReleaseGil release;
          CalibrationOptions co;
          co.max_samples = max_samples;
          const CalibrationBatch batch = LoadCalibrationBatch(calib_data, tok, co);
          cs = CompareLinears(ref, q, batch);
        }
        nb::list out;
        for (const LinearComparison& c : cs) {
          nb::dict d;
          d["module"] = c.module;
          d["unfold"] = c.unfold;
          d["scale_min"] = c.scale_min;
          d["scale_max"] = c.scale_max;
          d["weight"] = MetricsDict(c.weight);
          d["output"] = MetricsDict(c.output);
          out.append(d);
        }
        return out;
      },
      "reference"_a, "quantized"_a, "tokenizer"_a, "calib_data"_a, "max_samples"_a = 32,
      "Every decoder linear of a quantized model against its reference (awq inspect "
      "--reference)");
  m.def(
      "salience",
      [](const std::string& stats_path, double threshold) {
        const ActivationStats st = LoadActivationStats(stats_path);
        nb::dict out;
        for (const ChannelStats& s : st.linears) {
          const SalienceSummary sum = SummarizeSalience(s, threshold);
          nb::dict d;
          d["channels"] = sum.channels;
          d["salient_share"] = sum.salient_share;
          d["top1pct_mass"] = sum.top1pct_mass;
          d["top_channel"] = sum.top_channel;
          d["top_mean_abs"] = sum.top_mean_abs;
          d["max_abs"] = sum.max_abs;
          d["median_mean_abs"] = sum.median_mean_abs;
          out[s.module.c_str()] = d;
        }
        return out;
      },
      "stats_path"_a, "threshold"_a = kDefaultSalienceThreshold,
      "Per-linear salience of an activation_stats.safetensors file");
  m.def("parse_byte_size", &ParseByteSize, "text"_a,
        "'5GB' (10^9), '2GiB' (2^30), '1024': transformers' max_shard_size");
  m.def("default_text_path", &DefaultTextPath, "name"_a,
        "assets/text/<name>.txt of the source tree ($AWQ_ASSETS_DIR overrides)");
  m.def(
      "config_from_json",
      [](const std::string& j) { return ConfigDict(ConfigFromJson(j, "quant_config")); }, "json"_a,
      "The validated settings: the default preset with the JSON object's keys applied");
  m.def(
      "num_threads", [] { return ThreadPool::Global().size(); },
      "Threads of the library's pool (AWQ_NUM_THREADS overrides)");
}

// The library's tensor-level Quantizer on numpy arrays (docs/LIBRARY.md).
void BindQuantizer(nb::module_& m) {
  using Matrix = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
  m.def(
      "quantize_tensor",
      [](const Matrix& w, const std::string& config_json, std::optional<Matrix> x) {
        const Quantizer q(ConfigFromJson(config_json, "quant_config"));
        const int64_t out = static_cast<int64_t>(w.shape(0)), in = static_cast<int64_t>(w.shape(1));
        if (x && static_cast<int64_t>(x->shape(1)) != in) {
          throw Error("x has " + std::to_string(x->shape(1)) + " columns; w has " +
                      std::to_string(in) + " inputs");
        }
        ScaledQuantization s;
        std::vector<float> deq;
        TensorMetrics metrics;
        {
          ReleaseGil release;
          if (x) {
            s = q.Quantize(w.data(), out, in, x->data(), static_cast<int64_t>(x->shape(0)));
          } else {
            s.linear = q.Quantize(w.data(), out, in);
          }
          deq = x ? q.Dequantize(s) : q.Dequantize(s.linear);
          metrics = CompareTensors(w.data(), deq.data(), out * in);
        }
        const size_t o = static_cast<size_t>(out), g = static_cast<size_t>(s.linear.n_groups());
        nb::dict d;
        d["codes"] = ToNumpy(std::move(s.linear.q), {o, static_cast<size_t>(in)});
        d["scales"] = ToNumpy(std::move(s.linear.scales), {o, g});
        if (s.linear.params.zero_point) d["zeros"] = ToNumpy(std::move(s.linear.zeros), {o, g});
        d["dequantized"] = ToNumpy(std::move(deq), {o, static_cast<size_t>(in)});
        d["metrics"] = MetricsDict(metrics);
        if (x) {
          d["input_scales"] = ToNumpy(std::move(s.input_scales), {static_cast<size_t>(in)});
          d["best_index"] = s.best_index;
          d["ratio"] = s.ratio;
          d["loss"] = s.loss;
          d["rtn_loss"] = s.rtn_loss;
          d["search_loss"] = s.search_loss;
        }
        return d;
      },
      "w"_a, "config_json"_a = "{}", "x"_a.none() = nb::none(),
      "Quantizes w [out, in] fp32: round to nearest, or with x [n_tokens, in] AWQ's scale and clip "
      "search (codes of W diag(s)); 'dequantized' is in W's basis");
}

}  // namespace

void InitModule(nb::module_& m) {
  m.doc() = "awq.cpp's C++ library (awq_lib); the API is the awqcpp package";
  PyObject* bases = PyTuple_Pack(2, PyExc_ValueError, PyExc_RuntimeError);
  g_awq_error = PyErr_NewExceptionWithDoc(
      "awqcpp.AwqError",
      "An error of the input (a bad file, option or shape); the message is the CLI's.", bases,
      nullptr);
  Py_DECREF(bases);
  m.attr("AwqError") = nb::handle(g_awq_error);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(g_awq_error, e.what());
    }
  });
  BindTokenizer(m);
  BindModel(m);
  BindFunctions(m);
  BindQuantizer(m);
}

}  // namespace awq::python

NB_MODULE(_awqcpp, m) { awq::python::InitModule(m); }
