// `awq quantize MODEL OUT`: RTN, AWQ, GPTQ or AWQ+GPTQ quantization to an AutoAWQ GEMM checkpoint
// folder, or AWQ/RTN into a GGUF file of llama.cpp's types (`--format gguf`), with per-block
// progress, a size/time summary and --json for scripts. Option names follow AutoAWQ.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "awq/activation_stats.h"
#include "awq/awq_checkpoint.h"
#include "awq/bench.h"
#include "awq/calibration.h"
#include "awq/gguf.h"
#include "awq/gguf_export.h"
#include "awq/gguf_recipe.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/safetensors.h"
#include "awq/thread_pool.h"
#include "cli/commands.h"
#include "cli/load.h"
#include "cli/progress.h"
#include "core/output_guard.h"

namespace awq::cli {

namespace {

struct QuantizeArgs {
  std::string model, out;
  std::string method = "awq";
  std::string preset = "default";
  std::optional<int> w_bit;
  std::optional<int64_t> q_group_size;
  std::optional<bool> zero_point;
  std::optional<bool> duo_scaling;
  std::optional<bool> apply_clip;
  std::optional<int64_t> max_calib_samples, max_calib_seq_len;
  std::optional<double> damp_percent;
  std::optional<int64_t> gptq_block_size;
  bool act_order = false;
  std::string version;
  std::string calib_data;
  std::vector<std::string> modules_to_not_convert;
  std::string config_file;
  std::string shard_size = "5GB";
  std::string activation_memory = "256MiB";
  int64_t search_samples = 0;
  int grid_step = 0;
  int64_t min_expert_tokens = QuantizeOptions{}.min_expert_tokens;
  std::string format;  // "hf" or "gguf"; empty: gguf when the output ends in .gguf
  std::string gguf_type = "Q4_K_M";
  bool overwrite = false;
  bool save_activation_stats = false;
  bool json = false;
  bool quiet = false;
};

std::string DefaultCalibData() {
  const char* env = std::getenv("AWQ_ASSETS_DIR");
  const std::string assets = env ? env : std::string(AWQ_SOURCE_DIR) + "/assets";
  return assets + "/text/emma.txt";
}

// `--format gguf`: the model into one GGUF file of llama.cpp's types (docs/GGUF.md).
int RunQuantizeGguf(const QuantizeArgs& a, const QuantizeOptions& opt, const Tokenizer& tok,
                    ProgressBar& bar, std::chrono::steady_clock::time_point t0) {
  GgufExportOptions go;
  go.file_type = ParseGgufFileType(a.gguf_type);
  go.overwrite = a.overwrite;
  if (!a.quiet) {
    std::fprintf(stderr, "quantizing %s with %s into %s (llama.cpp type %s)\n", a.model.c_str(),
                 a.method.c_str(), a.out.c_str(), GgufFileTypeName(go.file_type).c_str());
  }
  const QuantizeResult r = QuantizeToGguf(a.model, tok, opt, go, a.out);
  bar.Finish();
  const double total_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // What the file holds, type by type.
  const GgufFile f = GgufFile::Open(a.out);
  std::map<std::string, std::pair<int64_t, uint64_t>> by_type;  // type -> (tensors, bytes)
  int64_t params = 0;
  uint64_t bytes = 0;
  for (const GgufTensorInfo& t : f.tensors()) {
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    params += n;
    bytes += t.nbytes;
    auto& e = by_type[GgmlTypeName(t.type)];
    e.first += 1;
    e.second += t.nbytes;
  }
  const uint64_t file_bytes = std::filesystem::file_size(a.out);
  const StageSeconds& s = r.seconds;
  // Mixture-of-experts layers: the calibration tokens each expert received, and the experts
  // rounded by RTN for receiving fewer than --min-expert-tokens.
  nlohmann::json experts = nlohmann::json::array();
  for (const BlockReport& b : r.blocks) {
    if (b.expert_tokens.empty()) continue;
    experts.push_back({{"layer", b.layer}, {"tokens", b.expert_tokens}, {"rtn", b.rtn_experts}});
  }
  if (a.json) {
    nlohmann::json types = nlohmann::json::object();
    for (const auto& [name, e] : by_type) types[name] = {{"tensors", e.first}, {"bytes", e.second}};
    nlohmann::json j = {{"model", a.model},
                        {"output", a.out},
                        {"format", "gguf"},
                        {"gguf_type", GgufFileTypeName(go.file_type)},
                        {"method", a.method},
                        {"parameters", params},
                        {"file_bytes", file_bytes},
                        {"bits_per_weight", 8.0 * static_cast<double>(bytes) / params},
                        {"types", types},
                        {"calib_blocks", r.calib_blocks},
                        {"calib_tokens", r.calib_tokens},
                        {"peak_rss_bytes", r.peak_rss_bytes},
                        {"seconds",
                         {{"total", total_s},
                          {"capture", s.capture},
                          {"scale_search", s.scale_search},
                          {"clip_search", s.clip_search},
                          {"quantize", s.quantize},
                          {"write", s.write}}}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("wrote %s: %.1f MiB, %.2f bits per weight (%lld parameters)\n", a.out.c_str(),
              Mib(static_cast<int64_t>(file_bytes)), 8.0 * static_cast<double>(bytes) / params,
              static_cast<long long>(params));
  for (const auto& [name, e] : by_type) {
    std::printf("  %-7s %4lld tensors %9.1f MiB\n", name.c_str(), static_cast<long long>(e.first),
                Mib(static_cast<int64_t>(e.second)));
  }
  std::printf("  time %.1fs: capture %.1fs, scale search %.1fs, clip search %.1fs, write %.1fs\n",
              total_s, s.capture, s.scale_search, s.clip_search, s.write);
  std::printf("  peak RSS %.0f MiB\n", Mib(r.peak_rss_bytes));
  return 0;
}

int RunQuantize(const QuantizeArgs& a) {
  namespace fs = std::filesystem;
  const auto t0 = std::chrono::steady_clock::now();
  CheckOutputIsNotInput(a.model, a.out);
  // Held until the output is complete: a second run on the same output refuses at once.
  const OutputLock lock(a.out);
  if (fs::exists(a.out) && !a.overwrite) {
    throw Error(a.out + ": output exists; pass --overwrite to replace it");
  }
  const std::string format =
      !a.format.empty()
          ? a.format
          : (a.out.size() > 5 && a.out.compare(a.out.size() - 5, 5, ".gguf") == 0 ? "gguf" : "hf");
  if (format != "hf" && format != "gguf") {
    throw Error("--format '" + a.format + "' is not supported; choose hf or gguf");
  }
  const bool gguf = format == "gguf";
  if (gguf && (a.w_bit || a.q_group_size || a.zero_point || !a.version.empty())) {
    throw Error(
        "--w-bit, --q-group-size, --zero-point and --version describe awq.cpp checkpoints; a "
        "GGUF file's types come from --gguf-type (e.g. Q4_0, Q4_K_M, Q3_K_M)");
  }
  QuantizeOptions opt;
  opt.method = ParseQuantMethod(a.method);
  if (a.damp_percent) {
    if (!(*a.damp_percent > 0 && *a.damp_percent < 1)) {
      char v[32];
      std::snprintf(v, sizeof(v), "%g", *a.damp_percent);
      throw Error(std::string("--damp-percent ") + v +
                  " is out of range: it must be in (0, 1), e.g. 0.01");
    }
    opt.gptq.damp_percent = *a.damp_percent;
  }
  if (a.gptq_block_size) {
    if (*a.gptq_block_size <= 0) {
      throw Error("--gptq-block-size " + std::to_string(*a.gptq_block_size) +
                  " is not positive (default 128)");
    }
    opt.gptq.block_size = *a.gptq_block_size;
  }
  opt.gptq.act_order = a.act_order;
  const bool uses_gptq = opt.method == QuantMethod::kGptq || opt.method == QuantMethod::kAwqGptq;
  if (!uses_gptq && (a.damp_percent || a.gptq_block_size || a.act_order)) {
    throw Error(
        "--damp-percent, --gptq-block-size and --act-order apply to --method gptq and "
        "awq+gptq, not '" +
        a.method + "'");
  }
  opt.config = QuantPreset(a.preset);
  if (!a.config_file.empty()) LoadQuantOverrides(a.config_file, &opt.config);
  if (a.w_bit) opt.config.w_bit = *a.w_bit;
  if (a.q_group_size) opt.config.q_group_size = *a.q_group_size;
  if (a.zero_point) opt.config.zero_point = *a.zero_point;
  if (a.duo_scaling) opt.config.duo_scaling = *a.duo_scaling;
  if (a.apply_clip) opt.config.apply_clip = *a.apply_clip;
  if (a.max_calib_samples) opt.config.max_calib_samples = *a.max_calib_samples;
  if (a.max_calib_seq_len) opt.config.max_calib_seq_len = *a.max_calib_seq_len;
  if (!a.version.empty()) {
    opt.config.version = a.version;
  } else if (opt.config.w_bit != 4 && opt.config.version == "gemm") {
    // The GEMM layout is 4-bit only; other widths go to our documented packed layout.
    opt.config.version = "awqcpp_packed";
    if (!a.quiet) {
      std::fprintf(stderr,
                   "w_bit %d: writing the awqcpp_packed layout (docs/LAYOUTS.md); the "
                   "AutoAWQ GEMM layout holds 4-bit weights only\n",
                   opt.config.w_bit);
    }
  }
  for (const auto& m : a.modules_to_not_convert) opt.config.modules_to_not_convert.push_back(m);
  opt.config.Validate();
  const uint64_t shard_bytes = ParseByteSize(a.shard_size);
  opt.activation_budget_bytes = ParseByteSize(a.activation_memory);
  if (a.search_samples < 0) {
    throw Error("--search-samples " + std::to_string(a.search_samples) +
                " is negative (0 scores the candidates on every calibration sample)");
  }
  opt.search_samples = a.search_samples;
  if (a.grid_step < 0 || a.grid_step > opt.config.n_grid) {
    throw Error("--grid-step " + std::to_string(a.grid_step) + " is outside 0.." +
                std::to_string(opt.config.n_grid) + " (0 or 1 scores every ratio of the grid)");
  }
  opt.grid_step = a.grid_step;
  if (a.min_expert_tokens < 0) {
    throw Error("--min-expert-tokens " + std::to_string(a.min_expert_tokens) + " is negative");
  }
  opt.min_expert_tokens = a.min_expert_tokens;
  opt.calib_data = a.calib_data.empty() ? DefaultCalibData() : a.calib_data;

  const Tokenizer tok = Tokenizer::ForModel(a.model);
  ProgressBar bar("blocks", "blk", !a.quiet);
  opt.progress = [&](int64_t done, int64_t total) {
    bar.Update(done, total);
    if (!a.quiet) std::fprintf(stderr, " RSS %.0f MiB", Mib(PeakRssBytes()));
  };
  if (gguf) return RunQuantizeGguf(a, opt, tok, bar, t0);
  QuantizeResult r;
  int64_t params = 0;
  double write_s = 0;
  if (!a.save_activation_stats) {
    // The streaming path: one block in memory, staged to OUT.partial, resumable.
    {
      const Model probe = Model::OpenStreaming(a.model);
      params = ParameterCount(probe.config());
      if (!a.quiet) {
        std::fprintf(stderr,
                     "quantizing %s (%lld parameters) with %s, w_bit %d, group %lld, zero_point "
                     "%s, streaming block by block (staged in %s.partial)\n",
                     a.model.c_str(), static_cast<long long>(params), a.method.c_str(),
                     opt.config.w_bit, static_cast<long long>(opt.config.q_group_size),
                     opt.config.zero_point ? "on" : "off", a.out.c_str());
      }
    }
    r = QuantizeToFolder(a.model, tok, opt, a.out, shard_bytes, a.overwrite);
    bar.Finish();
    write_s = r.seconds.write;
    if (r.resumed_blocks > 0 && !a.quiet) {
      std::fprintf(stderr, "resumed: blocks 0-%lld were staged by an earlier run\n",
                   static_cast<long long>(r.resumed_blocks - 1));
    }
  } else {
    // Salience statistics of the ORIGINAL model's linear inputs on the same calibration batch,
    // for `awq inspect` to report later (docs/METRICS.md): they need the whole model in memory.
    Model model = Model::Load(a.model, LoadOptions{.int4 = false});
    params = model.ParameterCount();
    if (!a.quiet) {
      std::fprintf(
          stderr, "quantizing %s (%lld parameters) with %s, w_bit %d, group %lld, zero_point %s\n",
          a.model.c_str(), static_cast<long long>(params), a.method.c_str(), opt.config.w_bit,
          static_cast<long long>(opt.config.q_group_size), opt.config.zero_point ? "on" : "off");
    }
    CalibrationOptions co;
    co.max_samples = opt.config.max_calib_samples;
    co.seq_len = opt.config.max_calib_seq_len;
    const CalibrationBatch batch = LoadCalibrationBatch(opt.calib_data, tok, co);
    if (!a.quiet) {
      std::fprintf(stderr, "collecting activation statistics on %lld x %lld calibration tokens\n",
                   static_cast<long long>(batch.n_blocks), static_cast<long long>(batch.seq_len));
    }
    const ActivationStats stats = CollectActivationStats(model, batch);
    r = QuantizeModel(model, tok, opt);
    bar.Finish();
    const auto t_write = std::chrono::steady_clock::now();
    SaveQuantizedModel(model, r, opt.config, &tok, a.out, shard_bytes, a.overwrite);
    SaveActivationStats(stats, a.out);
    write_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_write).count();
  }
  const double total_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // The search's rate against the machine's fp32 GEMM rate, measured now on the same pool.
  const double search_gflops =
      r.seconds.scale_search > 0 ? r.search_flops / r.seconds.scale_search / 1e9 : 0;
  const double peak_gflops = r.search_flops > 0 ? MeasureSgemmGflops(ThreadPool::Global()) : 0;

  const int64_t fp16_bytes = params * 2, fp32_bytes = params * 4;
  const int64_t out_bytes = DirBytes(a.out);
  const double ratio = static_cast<double>(fp16_bytes) / static_cast<double>(out_bytes);
  const StageSeconds& s = r.seconds;
  // Mixture-of-experts layers: the calibration tokens each expert received, and the experts
  // rounded by RTN for receiving fewer than --min-expert-tokens.
  nlohmann::json experts = nlohmann::json::array();
  for (const BlockReport& b : r.blocks) {
    if (b.expert_tokens.empty()) continue;
    experts.push_back({{"layer", b.layer}, {"tokens", b.expert_tokens}, {"rtn", b.rtn_experts}});
  }
  if (a.json) {
    nlohmann::json j = {{"model", a.model},
                        {"output", a.out},
                        {"method", a.method},
                        {"w_bit", opt.config.w_bit},
                        {"q_group_size", opt.config.q_group_size},
                        {"zero_point", opt.config.zero_point},
                        {"parameters", params},
                        {"original_fp16_bytes", fp16_bytes},
                        {"original_fp32_bytes", fp32_bytes},
                        {"output_bytes", out_bytes},
                        {"compression_ratio_vs_fp16", ratio},
                        {"memory_saved_bytes", fp16_bytes - out_bytes},
                        {"calib_blocks", r.calib_blocks},
                        {"gptq", uses_gptq ? nlohmann::json{{"damp_percent", opt.gptq.damp_percent},
                                                            {"block_size", opt.gptq.block_size},
                                                            {"act_order", opt.gptq.act_order}}
                                           : nlohmann::json(nullptr)},
                        {"calib_tokens", r.calib_tokens},
                        {"peak_rss_bytes", r.peak_rss_bytes},
                        {"resumed_blocks", r.resumed_blocks},
                        {"experts", experts},
                        {"search_gflop", r.search_flops / 1e9},
                        {"search_gflops_per_s", search_gflops},
                        {"sgemm_peak_gflops_per_s", peak_gflops},
                        {"seconds",
                         {{"total", total_s},
                          {"calibration", s.calibration},
                          {"capture", s.capture},
                          {"scale_search", s.scale_search},
                          {"clip_search", s.clip_search},
                          {"quantize", s.quantize},
                          {"gptq", s.gptq},
                          {"write", write_s}}}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("wrote %s\n", a.out.c_str());
    std::printf("  original   %8.1f MiB fp16 (%.1f MiB fp32)\n", Mib(fp16_bytes), Mib(fp32_bytes));
    std::printf("  quantized  %8.1f MiB on disk: %.2fx smaller than fp16, %.1f MiB saved\n",
                Mib(out_bytes), ratio, Mib(fp16_bytes - out_bytes));
    if (r.calib_blocks > 0) {
      std::printf("  calibration %lld blocks x %lld tokens\n",
                  static_cast<long long>(r.calib_blocks),
                  static_cast<long long>(r.calib_tokens / std::max<int64_t>(1, r.calib_blocks)));
    }
    std::printf(
        "  time %.1fs: calibration %.1fs, capture %.1fs, scale search %.1fs, clip search %.1fs, "
        "quantize %.1fs, gptq %.1fs, write %.1fs\n",
        total_s, s.calibration, s.capture, s.scale_search, s.clip_search, s.quantize, s.gptq,
        write_s);
    std::printf("  peak RSS %.0f MiB\n", Mib(r.peak_rss_bytes));
    for (const nlohmann::json& e : experts) {
      std::string tokens, rtn;
      for (const auto& t : e["tokens"]) tokens += (tokens.empty() ? "" : " ") + t.dump();
      for (const auto& t : e["rtn"]) rtn += (rtn.empty() ? "" : ", ") + t.dump();
      std::printf("  layer %s experts' calibration tokens: %s%s\n", e["layer"].dump().c_str(),
                  tokens.c_str(),
                  rtn.empty() ? ""
                              : ("; RTN (fewer than " + std::to_string(opt.min_expert_tokens) +
                                 "): experts " + rtn)
                                    .c_str());
    }
    if (r.search_flops > 0) {
      std::printf(
          "  scale search %.0f GFLOP at %.1f GFLOP/s, %.0f%% of this machine's fp32 sgemm "
          "(%.1f GFLOP/s, measured now)\n",
          r.search_flops / 1e9, search_gflops, 100.0 * search_gflops / peak_gflops, peak_gflops);
    }
  }
  return 0;
}

}  // namespace

Runner AddQuantizeCommand(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  CLI::App* sub = app.add_subcommand(
      "quantize",
      "Quantize a model to 4-bit (AWQ, GPTQ, AWQ+GPTQ or RTN) and write an AutoAWQ GEMM "
      "checkpoint, or (AWQ or RTN) a GGUF file of llama.cpp's types");
  sub->add_option("model", a->model, "GGUF file or Hugging Face folder")->required();
  sub->add_option("output", a->out, "Output folder (Hugging Face layout), or a .gguf file")
      ->required();
  sub->add_option("--method", a->method, "rtn, awq, gptq or awq+gptq (docs/GPTQ.md)")
      ->capture_default_str();
  sub->add_option("--damp-percent,--damp_percent", a->damp_percent,
                  "GPTQ dampening, a fraction of mean(diag H) added to the diagonal (0.01)");
  sub->add_option("--gptq-block-size,--gptq_block_size", a->gptq_block_size,
                  "GPTQ columns per lazy batch update (128)");
  sub->add_flag("--act-order,--act_order", a->act_order,
                "GPTQ: quantize columns by descending Hessian diagonal (static groups)");
  sub->add_option("--preset", a->preset,
                  "default, conservative or aggressive (docs/QUANT_CONFIG.md)")
      ->capture_default_str();
  sub->add_option("--w-bit,--w_bit", a->w_bit, "Weight bits (2-8)");
  sub->add_option("--q-group-size,--q_group_size", a->q_group_size,
                  "Group size along the input (32, 64, 128, 256, -1 = per channel)");
  sub->add_option("--zero-point,--zero_point", a->zero_point,
                  "Asymmetric quantization with zero points (true/false)");
  sub->add_option("--version", a->version,
                  "Checkpoint layout: gemm (default at 4 bits), gemv, awqcpp_packed");
  sub->add_option("--calib-data,--calib_data", a->calib_data,
                  "Calibration text: .txt (a sample per paragraph), .jsonl ('text' field) or a "
                  "folder (default: Emma)");
  sub->add_option("--max-calib-samples,--max_calib_samples", a->max_calib_samples,
                  "Calibration samples (128)");
  sub->add_option("--max-calib-seq-len,--max_calib_seq_len", a->max_calib_seq_len,
                  "Calibration block length in tokens (512)");
  sub->add_option("--duo-scaling,--duo_scaling", a->duo_scaling,
                  "Search scales from activations and weights (true/false)");
  sub->add_option("--apply-clip,--apply_clip", a->apply_clip,
                  "Search and apply weight clipping (true/false)");
  sub->add_option("--modules-to-not-convert,--modules_to_not_convert", a->modules_to_not_convert,
                  "Name substrings of linears kept in full precision")
      ->delimiter(',');
  sub->add_option("--config", a->config_file,
                  "JSON file with settings and per-layer overrides (docs/QUANT_CONFIG.md)");
  sub->add_option("--shard-size", a->shard_size, "Maximum safetensors shard size")
      ->capture_default_str();
  sub->add_option("--activation-memory", a->activation_memory,
                  "Activations the block walks hold at once; the calibration batch is walked in "
                  "chunks of samples that fit (results do not depend on it)")
      ->capture_default_str();
  sub->add_option("--search-samples,--search_samples", a->search_samples,
                  "Score the scale candidates on the first N calibration samples only (0 = all; "
                  "docs/STREAMING.md)")
      ->capture_default_str();
  sub->add_option("--min-expert-tokens", a->min_expert_tokens,
                  "Mixture-of-experts models: an expert the calibration routes fewer tokens to is "
                  "rounded by RTN without searches of its own (default 16)");
  sub->add_option("--grid-step", a->grid_step,
                  "Coarse-to-fine scale search: score every Nth ratio of the grid, then the "
                  "ratios within N-1 of the best (0 or 1 = every ratio; docs/STREAMING.md)")
      ->capture_default_str();
  sub->add_option("--format", a->format,
                  "hf (an AutoAWQ checkpoint folder) or gguf (one GGUF file for llama.cpp); "
                  "default: gguf when the output ends in .gguf");
  sub->add_option("--gguf-type,--gguf_type", a->gguf_type,
                  "GGUF output: llama.cpp's file type, its per-tensor types as llama-quantize "
                  "gives them (" +
                      GgufFileTypeNames() + ")")
      ->capture_default_str();
  sub->add_flag("--overwrite", a->overwrite, "Replace an existing output folder");
  sub->add_flag("--save-activation-stats", a->save_activation_stats,
                "Also save the original model's per-channel input statistics (mean/max |x| of "
                "every linear on the calibration batch) as activation_stats.safetensors in the "
                "output, for `awq inspect`");
  sub->add_flag("--json", a->json, "Print the summary as JSON");
  sub->add_flag("-q,--quiet", a->quiet, "No progress on stderr");
  return [a] { return RunQuantize(*a); };
}

}  // namespace awq::cli
