// `awq inspect CHECKPOINT`: the quantization config, bits / group size / shape / stored size of
// every layer and the totals; activation salience when statistics are available; per-layer
// weight and output error against a reference model with --reference (docs/METRICS.md).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>

#include "awq/activation_stats.h"
#include "awq/awq_checkpoint.h"
#include "awq/calibration.h"
#include "awq/metrics.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "cli/commands.h"
#include "cli/load.h"
#include "cli/table.h"

namespace awq::cli {

namespace {

struct InspectArgs {
  std::string checkpoint;
  std::string reference;
  std::string calib_data;
  int64_t max_calib_samples = 32;
  double threshold = kDefaultSalienceThreshold;
  bool json = false;
  bool quiet = false;
};

nlohmann::json MetricsJson(const TensorMetrics& m) {
  return {{"mse", m.mse},
          {"relative_error", m.relative_error},
          {"correlation", m.correlation},
          {"max_abs_error", m.max_abs_error},
          {"count", m.count}};
}

nlohmann::json SizeJson(const SizeMetrics& s) {
  return {{"parameters", s.parameters},
          {"fp16_bytes", s.fp16_bytes},
          {"fp32_bytes", s.fp32_bytes},
          {"stored_bytes", s.stored_bytes},
          {"ratio_vs_fp16", s.ratio()},
          {"saved_bytes_vs_fp16", s.saved_bytes()},
          {"bits_per_weight", s.bits_per_weight()}};
}

nlohmann::json SalienceJson(const SalienceSummary& s) {
  return {{"channels", s.channels},
          {"salient_share", s.salient_share},
          {"top1pct_mass", s.top1pct_mass},
          {"top_channel", s.top_channel},
          {"top_mean_abs", s.top_mean_abs},
          {"max_abs", s.max_abs},
          {"median_mean_abs", s.median_mean_abs}};
}

std::string ShapeText(const Shape& s) {
  std::string t;
  for (size_t i = 0; i < s.size(); ++i) t += (i ? "x" : "") + std::to_string(s[i]);
  return t.empty() ? "scalar" : t;
}

std::string Join(const std::vector<std::string>& v) {
  if (v.empty()) return "none";
  std::string t;
  for (size_t i = 0; i < v.size(); ++i) t += (i ? ", " : "") + v[i];
  return t;
}

CalibrationBatch BuildBatch(const std::string& model_path, const std::string& calib_data,
                            int64_t max_samples) {
  CalibrationOptions co;
  co.max_samples = max_samples;
  return LoadCalibrationBatch(calib_data, Tokenizer::ForModel(model_path), co);
}

int RunInspect(const InspectArgs& a) {
  namespace fs = std::filesystem;
  if (!fs::exists(a.checkpoint)) throw Error(a.checkpoint + ": no such file or folder");
  if (!a.reference.empty() && !fs::exists(a.reference)) {
    throw Error("--reference " + a.reference + ": no such file or folder");
  }
  if (!a.calib_data.empty() && !fs::exists(a.calib_data)) {
    throw Error("--calib-data " + a.calib_data + ": no such file or folder");
  }
  if (a.max_calib_samples <= 0) {
    throw Error("--max-calib-samples must be positive, got " + std::to_string(a.max_calib_samples));
  }
  const bool is_dir = fs::is_directory(a.checkpoint);
  const CheckpointSizes sizes = MeasureCheckpointSizes(a.checkpoint);
  const std::optional<QuantConfig> qc =
      is_dir ? ReadAwqQuantConfig(a.checkpoint) : std::optional<QuantConfig>();

  // Salience: the saved statistics next to the checkpoint, else computed on --calib-data.
  std::optional<ActivationStats> stats;
  std::string stats_source;
  const std::string stats_file =
      is_dir ? (fs::path(a.checkpoint) / kActivationStatsFile).string() : std::string();
  const std::string calib =
      a.calib_data.empty() && !a.reference.empty() ? DefaultTextPath("emma") : a.calib_data;
  std::optional<Model> ref_model, quant_model;
  auto quant = [&]() -> const Model& {
    if (!quant_model) quant_model = Model::Load(a.checkpoint, LoadOptions{.int4 = false});
    return *quant_model;
  };
  std::optional<CalibrationBatch> batch;
  const std::string tok_path = a.reference.empty() ? a.checkpoint : a.reference;
  if (!a.reference.empty()) {
    if (!a.quiet) std::fprintf(stderr, "loading reference %s\n", a.reference.c_str());
    ref_model = Model::Load(a.reference, LoadOptions{.int4 = false});
  }
  if (!stats_file.empty() && fs::exists(stats_file) && a.calib_data.empty()) {
    stats = LoadActivationStats(stats_file);
    stats_source = stats_file;
  } else if (!a.calib_data.empty() || ref_model) {
    // With --reference the calibration pass runs anyway; the statistics cost one more forward.
    batch = BuildBatch(tok_path, calib, a.max_calib_samples);
    const Model& m = ref_model ? *ref_model : quant();
    if (!a.quiet) {
      std::fprintf(stderr, "collecting activation statistics on %lld calibration tokens\n",
                   static_cast<long long>(batch->n_blocks * batch->seq_len));
    }
    stats = CollectActivationStats(m, *batch);
    stats_source = (ref_model ? a.reference : a.checkpoint) + " on " + calib;
  }
  std::map<std::string, LinearComparison> cmp;
  if (ref_model) {
    if (!batch) batch = BuildBatch(tok_path, calib, a.max_calib_samples);
    if (!a.quiet) {
      std::fprintf(stderr, "comparing every linear on %lld calibration tokens of %s\n",
                   static_cast<long long>(batch->n_blocks * batch->seq_len), calib.c_str());
    }
    for (LinearComparison& c : CompareLinears(*ref_model, quant(), *batch)) {
      cmp.emplace(c.module, std::move(c));
    }
  }
  std::map<std::string, SalienceSummary> sal;
  if (stats) {
    for (const ChannelStats& s : stats->linears) sal[s.module] = SummarizeSalience(s, a.threshold);
  }

  // The rows of the per-linear table: quantized linears, else the linears known from the
  // statistics or the comparison.
  std::vector<std::string> modules;
  std::map<std::string, const CheckpointEntry*> entry_of;
  for (const CheckpointEntry& e : sizes.entries) {
    if (e.quantized) {
      modules.push_back(e.name);
      entry_of[e.name] = &e;
    }
  }
  if (modules.empty()) {
    if (ref_model) {
      for (const auto& [m, c] : cmp) modules.push_back(m);
    } else if (stats) {
      for (const ChannelStats& s : stats->linears) modules.push_back(s.module);
    }
  }
  // Checkpoint order is by name ("layers.10" before "layers.2"); list by layer instead, and
  // within a layer in the family's order when the folder's config names a known family.
  std::optional<ModelConfig> model_config;
  try {
    model_config = LoadHfConfig(a.checkpoint);
  } catch (const Error&) {
  }
  auto layer_key = [&](const std::string& m) {
    const std::string p = "model.layers.";
    int64_t layer = INT64_MAX, pos = 0;
    if (m.rfind(p, 0) == 0) {
      layer = std::atoll(m.c_str() + p.size());
      if (model_config) {
        const std::vector<std::string> names = LinearNames(*model_config, layer);
        pos = std::find(names.begin(), names.end(), m) - names.begin();
      }
    }
    return std::make_tuple(layer, pos, m);
  };
  std::stable_sort(modules.begin(), modules.end(), [&](const std::string& x, const std::string& y) {
    return layer_key(x) < layer_key(y);
  });

  if (a.json) {
    nlohmann::json j;
    j["checkpoint"] = a.checkpoint;
    j["format"] = sizes.format;
    j["quantized"] = qc.has_value();
    if (qc) {
      j["quant_config"] = {{"quant_method", "awq"},
                           {"w_bit", qc->w_bit},
                           {"q_group_size", qc->q_group_size},
                           {"zero_point", qc->zero_point},
                           {"version", qc->version},
                           {"modules_to_not_convert", qc->modules_to_not_convert}};
    }
    if (!a.reference.empty()) j["reference"] = a.reference;
    if (stats) {
      j["salience"] = {
          {"source", stats_source}, {"n_tokens", stats->n_tokens}, {"threshold", a.threshold}};
    }
    if (batch) j["calibration"] = {{"file", calib}, {"tokens", batch->n_blocks * batch->seq_len}};
    nlohmann::json layers = nlohmann::json::array();
    for (const std::string& m : modules) {
      nlohmann::json l = {{"module", m}};
      if (const auto it = entry_of.find(m); it != entry_of.end()) {
        const CheckpointEntry& e = *it->second;
        l["bits"] = e.bits;
        l["group_size"] = e.group_size;
        l["shape"] = e.shape;
        l["size"] = SizeJson(e.size);
      }
      if (const auto it = cmp.find(m); it != cmp.end()) {
        l["weight"] = MetricsJson(it->second.weight);
        l["output"] = MetricsJson(it->second.output);
        l["unfold"] = {{"method", it->second.unfold},
                       {"scale_min", it->second.scale_min},
                       {"scale_max", it->second.scale_max}};
      }
      if (const auto it = sal.find(m); it != sal.end()) l["salience"] = SalienceJson(it->second);
      layers.push_back(std::move(l));
    }
    j["layers"] = std::move(layers);
    nlohmann::json tensors = nlohmann::json::array();
    for (const CheckpointEntry& e : sizes.entries) {
      if (e.quantized) continue;
      tensors.push_back({{"name", e.name},
                         {"dtype", e.dtype},
                         {"shape", e.shape},
                         {"stored_bytes", e.size.stored_bytes}});
    }
    j["other_tensors"] = std::move(tensors);
    j["totals"] = {{"quantized_linears", SizeJson(sizes.quantized)},
                   {"other", SizeJson(sizes.other)},
                   {"total", SizeJson(sizes.total)}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }

  std::printf("checkpoint  %s (%s)\n", a.checkpoint.c_str(), sizes.format.c_str());
  if (qc) {
    std::printf(
        "quantization  quant_method awq, w_bit %d, group size %lld, zero point %s, "
        "version %s, modules_to_not_convert: %s\n",
        qc->w_bit, static_cast<long long>(qc->q_group_size), qc->zero_point ? "on" : "off",
        qc->version.c_str(), Join(qc->modules_to_not_convert).c_str());
  } else {
    std::printf("quantization  none: not an AWQ-quantized checkpoint\n");
  }
  if (!a.reference.empty()) std::printf("reference  %s\n", a.reference.c_str());
  if (batch) {
    std::printf("calibration  %lld tokens of %s\n",
                static_cast<long long>(batch->n_blocks * batch->seq_len), calib.c_str());
  }
  if (stats) {
    std::printf("salience  %s, %lld tokens; salient = mean|x| > %.3g x median\n",
                stats_source.c_str(), static_cast<long long>(stats->n_tokens), a.threshold);
  }
  std::printf("\n");
  if (!modules.empty()) {
    std::vector<std::string> header = {"module", "bits", "group", "shape", "stored", "ratio"};
    if (ref_model) {
      for (const char* h : {"w_mse", "w_relerr", "w_corr", "out_relerr", "out_corr"}) {
        header.push_back(h);
      }
    }
    if (stats) {
      for (const char* h : {"salient", "top1%mass", "top_mean|x|", "max|x|"}) header.push_back(h);
    }
    Table t(header);
    for (const std::string& m : modules) {
      std::vector<std::string> row = {m};
      if (const auto it = entry_of.find(m); it != entry_of.end()) {
        const CheckpointEntry& e = *it->second;
        row.push_back(std::to_string(e.bits));
        row.push_back(std::to_string(e.group_size));
        row.push_back(ShapeText(e.shape));
        row.push_back(Bytes(e.size.stored_bytes));
        row.push_back(Format("%.2fx", e.size.ratio()));
      } else {
        row.insert(row.end(), {"-", "-", "-", "-", "-"});
      }
      if (ref_model) {
        if (const auto it = cmp.find(m); it != cmp.end()) {
          const LinearComparison& c = it->second;
          row.push_back(Format("%.3g", c.weight.mse));
          row.push_back(Format("%.4f", c.weight.relative_error));
          row.push_back(Format("%.5f", c.weight.correlation));
          row.push_back(Format("%.4f", c.output.relative_error));
          row.push_back(Format("%.5f", c.output.correlation));
        } else {
          row.insert(row.end(), {"-", "-", "-", "-", "-"});
        }
      }
      if (stats) {
        if (const auto it = sal.find(m); it != sal.end()) {
          row.push_back(Format("%.2f%%", 100 * it->second.salient_share));
          row.push_back(Format("%.2f%%", 100 * it->second.top1pct_mass));
          row.push_back(Format("%.3g", it->second.top_mean_abs));
          row.push_back(Format("%.3g", it->second.max_abs));
        } else {
          row.insert(row.end(), {"-", "-", "-", "-"});
        }
      }
      t.AddRow(std::move(row));
    }
    std::printf("%s\n", t.Render().c_str());
  }
  if (!qc) {
    Table t({"tensor", "dtype", "shape", "stored", "bits/weight"});
    for (const CheckpointEntry& e : sizes.entries) {
      t.AddRow({e.name, e.dtype, ShapeText(e.shape), Bytes(e.size.stored_bytes),
                Format("%.2f", e.size.bits_per_weight())});
    }
    std::printf("%s\n", t.Render().c_str());
  }
  int64_t n_other = 0;
  for (const CheckpointEntry& e : sizes.entries) n_other += e.quantized ? 0 : 1;
  Table tot({"part", "tensors", "parameters", "fp16", "fp32", "stored", "ratio", "saved"});
  auto add = [&](const std::string& name, int64_t count, const SizeMetrics& s) {
    tot.AddRow({name, std::to_string(count), std::to_string(s.parameters), Bytes(s.fp16_bytes),
                Bytes(s.fp32_bytes), Bytes(s.stored_bytes), Format("%.2fx", s.ratio()),
                Bytes(s.saved_bytes())});
  };
  add("quantized linears", static_cast<int64_t>(entry_of.size()), sizes.quantized);
  add("other tensors", n_other, sizes.other);
  add("total", static_cast<int64_t>(sizes.entries.size()), sizes.total);
  std::printf("%s", tot.Render().c_str());
  std::printf(
      "original size (fp16) %s, compressed size %s, compression ratio %.2fx, saved %s "
      "(%.1f%%)\n",
      Bytes(sizes.total.fp16_bytes).c_str(), Bytes(sizes.total.stored_bytes).c_str(),
      sizes.total.ratio(), Bytes(sizes.total.saved_bytes()).c_str(),
      sizes.total.fp16_bytes > 0 ? 100.0 * sizes.total.saved_bytes() / sizes.total.fp16_bytes
                                 : 0.0);
  return 0;
}

}  // namespace

Runner AddInspectCommand(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* sub = app.add_subcommand(
      "inspect", "Show a checkpoint's quantization config, per-layer sizes and error metrics");
  sub->add_option("checkpoint", args->checkpoint, "Quantized folder, Hugging Face folder or GGUF")
      ->required();
  sub->add_option("--reference", args->reference,
                  "Full-precision model (GGUF or folder): per-layer weight and output metrics");
  sub->add_option("--calib-data", args->calib_data,
                  "Calibration text for activation statistics, computed on the reference when "
                  "given, else on the checkpoint (with --reference the default is "
                  "assets/text/emma.txt)");
  sub->add_option("--max-calib-samples", args->max_calib_samples,
                  "Calibration samples (paragraphs) to use")
      ->capture_default_str();
  sub->add_option("--salience-threshold", args->threshold,
                  "A channel is salient when its mean |x| exceeds this multiple of the median")
      ->capture_default_str();
  sub->add_flag("--json", args->json, "Print the report as JSON");
  sub->add_flag("-q,--quiet", args->quiet, "No progress messages on stderr");
  return [args] { return RunInspect(*args); };
}

}  // namespace awq::cli
