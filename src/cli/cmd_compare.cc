// `awq compare MODEL --methods fp,rtn,gptq,awq,awq+gptq [--gguf-types Q4_0,Q4_K_M]`: quantizes the
// model with each method (and into GGUF files of each llama.cpp type, plain and AWQ) on the same
// calibration text, then evaluates every result against the fp32 model on the same held-out
// text, and prints one table (text, --markdown FILE, --json).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "awq/error.h"
#include "awq/gguf_export.h"
#include "awq/gguf_recipe.h"
#include "awq/metrics.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "cli/commands.h"
#include "cli/load.h"
#include "cli/progress.h"
#include "core/mapped_file.h"

namespace awq::cli {

namespace {

struct CompareArgs {
  std::string model;
  std::vector<std::string> methods = {"fp", "rtn", "awq"};
  // GGUF rows: each type's plain rounding (llama-quantize's) and AWQ, as `awq quantize
  // --format gguf` writes them.
  std::vector<std::string> gguf_types;
  int w_bit = 4;
  int64_t q_group_size = 128;
  bool zero_point = true;
  std::string calib_data;
  int64_t max_calib_samples = 128, max_calib_seq_len = 512;
  std::string text;
  int64_t max_tokens = 16384;
  int64_t ctx = 2048;
  std::string out_dir;
  std::string markdown;
  bool json = false;
  bool quiet = false;
};

struct Row {
  std::string method;
  // Quantization (absent for fp).
  double quant_seconds = 0;
  int64_t peak_rss_bytes = 0;
  int64_t disk_bytes = 0;  // the written folder; fp: the fp16 size of its parameters
  std::string folder;
  // Evaluation against fp32.
  OutputComparison cmp;
};

// Resets this process's peak RSS (VmHWM) so each method's quantization is measured on its own;
// false where the kernel does not allow it (then peaks are cumulative and the table says so).
bool ResetPeakRss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  return static_cast<bool>(f.flush());
}

std::string MarkdownTable(const std::vector<Row>& rows, const CompareArgs& a, int64_t fp16_bytes,
                          int64_t positions) {
  std::ostringstream o;
  char buf[512];
  o << "| method | perplexity | vs fp | KL(fp||q) | top-1 agree | size MiB | vs fp16 | "
       "quantize s | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|\n";
  const double ppl_fp = rows.empty() ? 0 : rows[0].cmp.ppl_reference;
  for (const Row& r : rows) {
    const bool fp = r.method == "fp";
    std::snprintf(buf, sizeof(buf),
                  "| %s | %.4f | %+.2f%% | %.4f | %.2f%% | %.1f | %.2fx | %s | %s |\n",
                  r.method.c_str(), r.cmp.ppl_quantized, 100 * (r.cmp.ppl_quantized / ppl_fp - 1),
                  r.cmp.mean_kl, 100 * r.cmp.top1_agreement, Mib(r.disk_bytes),
                  static_cast<double>(fp16_bytes) / static_cast<double>(r.disk_bytes),
                  fp ? "-" : std::to_string(static_cast<int64_t>(r.quant_seconds + 0.5)).c_str(),
                  fp ? "-" : std::to_string(static_cast<int64_t>(Mib(r.peak_rss_bytes))).c_str());
    o << buf;
  }
  std::snprintf(buf, sizeof(buf),
                "\n%s, w_bit %d, group %lld, zero point %s; evaluated on %lld predicted tokens of "
                "%s (ctx %lld); calibration %s (%lld samples x <= %lld tokens).\n",
                a.model.c_str(), a.w_bit, static_cast<long long>(a.q_group_size),
                a.zero_point ? "on" : "off", static_cast<long long>(positions), a.text.c_str(),
                static_cast<long long>(a.ctx), a.calib_data.c_str(),
                static_cast<long long>(a.max_calib_samples),
                static_cast<long long>(a.max_calib_seq_len));
  o << buf;
  return o.str();
}

int RunCompare(CompareArgs a) {
  namespace fs = std::filesystem;
  if (a.methods.empty()) throw Error("compare: --methods is empty");
  for (const std::string& m : a.methods) {
    if (m != "fp") ParseQuantMethod(m);  // an unknown name fails before any work
  }
  for (const std::string& t : a.gguf_types) ParseGgufFileType(t);
  if (a.calib_data.empty()) a.calib_data = DefaultTextPath("emma");
  if (a.text.empty()) a.text = DefaultTextPath("prideprejudice");
  if (!fs::exists(a.model)) throw Error(a.model + ": no such file or folder");
  if (!fs::exists(a.text)) throw Error(a.text + ": no such file (--text)");
  const bool keep = !a.out_dir.empty();
  const std::string out_dir =
      keep ? a.out_dir
           : (fs::temp_directory_path() / ("awq-compare-" + std::to_string(getpid()))).string();
  fs::create_directories(out_dir);

  const Tokenizer tok = Tokenizer::ForModel(a.model);
  const std::vector<int32_t> ids = tok.Encode(ReadFileToString(a.text), true, false);
  std::vector<Row> rows;
  int64_t params = 0;
  // Phase 1: quantize with every method (the fp32 reference is not resident meanwhile, so each
  // peak RSS is that method's own).
  for (const std::string& method : a.methods) {
    Row row;
    row.method = method;
    if (method == "fp") {
      rows.push_back(row);
      continue;
    }
    QuantizeOptions opt;
    opt.method = ParseQuantMethod(method);
    opt.config.w_bit = a.w_bit;
    opt.config.q_group_size = a.q_group_size;
    opt.config.zero_point = a.zero_point;
    opt.config.max_calib_samples = a.max_calib_samples;
    opt.config.max_calib_seq_len = a.max_calib_seq_len;
    if (a.w_bit != 4) opt.config.version = "awqcpp_packed";
    opt.config.Validate();
    opt.calib_data = a.calib_data;
    Model model = Model::Load(a.model, LoadOptions{.int4 = false});
    params = model.ParameterCount();
    ResetPeakRss();
    ProgressBar bar(method, "blk", !a.quiet);
    opt.progress = [&](int64_t done, int64_t total) { bar.Update(done, total); };
    const auto t0 = std::chrono::steady_clock::now();
    const QuantizeResult r = QuantizeModel(model, tok, opt);
    row.quant_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    row.peak_rss_bytes = PeakRssBytes();
    bar.Finish();
    std::string name = method;
    for (char& ch : name) {
      if (ch == '+') ch = '_';
    }
    row.folder = (fs::path(out_dir) / name).string();
    SaveQuantizedModel(model, r, opt.config, &tok, row.folder, 5000000000ull, true);
    row.disk_bytes = DirBytes(row.folder);
    rows.push_back(row);
  }
  for (const std::string& type : a.gguf_types) {
    for (const char* method : {"rtn", "awq"}) {
      Row row;
      const GgufFileType ft = ParseGgufFileType(type);
      row.method = std::string(method) + " " + GgufFileTypeName(ft) + " gguf";
      QuantizeOptions opt;
      opt.method = ParseQuantMethod(method);
      opt.config.max_calib_samples = a.max_calib_samples;
      opt.config.max_calib_seq_len = a.max_calib_seq_len;
      opt.calib_data = a.calib_data;
      GgufExportOptions go;
      go.file_type = ft;
      go.overwrite = true;
      ResetPeakRss();
      ProgressBar bar(row.method, "blk", !a.quiet);
      opt.progress = [&](int64_t done, int64_t total) { bar.Update(done, total); };
      row.folder =
          (fs::path(out_dir) / (std::string(method) + "-" + GgufFileTypeName(ft) + ".gguf"))
              .string();
      const auto t0 = std::chrono::steady_clock::now();
      QuantizeToGguf(a.model, tok, opt, go, row.folder);
      row.quant_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      row.peak_rss_bytes = PeakRssBytes();
      bar.Finish();
      row.disk_bytes = static_cast<int64_t>(fs::file_size(row.folder));
      rows.push_back(row);
    }
  }
  // Phase 2: every result against the fp32 model on the held-out text, as each would run.
  const Model reference = Model::Load(a.model, LoadOptions{.int4 = false});
  params = reference.ParameterCount();
  const int64_t fp16_bytes = params * 2;
  OutputComparisonOptions co;
  co.ctx = a.ctx;
  co.max_tokens = a.max_tokens;
  for (Row& row : rows) {
    ProgressBar bar("eval " + row.method, "tok", !a.quiet);
    co.progress = [&](int64_t done, int64_t total) { bar.Update(done, total); };
    if (row.method == "fp") {
      row.disk_bytes = fp16_bytes;
      row.cmp = CompareModelOutputs(reference, reference, ids, co);
    } else {
      const Model q = Model::Load(row.folder);
      row.cmp = CompareModelOutputs(reference, q, ids, co);
    }
    bar.Finish();
  }
  if (!keep) fs::remove_all(out_dir);

  const int64_t positions = rows.empty() ? 0 : rows[0].cmp.n_positions;
  const std::string md = MarkdownTable(rows, a, fp16_bytes, positions);
  if (!a.markdown.empty()) WriteFileAtomic(a.markdown, md.data(), md.size());
  if (a.json) {
    nlohmann::json j = {{"model", a.model},
                        {"w_bit", a.w_bit},
                        {"q_group_size", a.q_group_size},
                        {"zero_point", a.zero_point},
                        {"calib_data", a.calib_data},
                        {"max_calib_samples", a.max_calib_samples},
                        {"text", a.text},
                        {"ctx", a.ctx},
                        {"n_positions", positions},
                        {"fp16_bytes", fp16_bytes}};
    j["methods"] = nlohmann::json::array();
    for (const Row& r : rows) {
      j["methods"].push_back({{"method", r.method},
                              {"perplexity", r.cmp.ppl_quantized},
                              {"perplexity_fp", r.cmp.ppl_reference},
                              {"mean_kl", r.cmp.mean_kl},
                              {"max_kl", r.cmp.max_kl},
                              {"top1_agreement", r.cmp.top1_agreement},
                              {"logits_relative_error", r.cmp.logits.relative_error},
                              {"logits_correlation", r.cmp.logits.correlation},
                              {"size_bytes", r.disk_bytes},
                              {"quantize_seconds", r.quant_seconds},
                              {"peak_rss_bytes", r.peak_rss_bytes},
                              {"folder", keep ? r.folder : ""}});
    }
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s", md.c_str());
  }
  return 0;
}

}  // namespace

Runner AddCompareCommand(CLI::App& app) {
  auto a = std::make_shared<CompareArgs>();
  CLI::App* sub = app.add_subcommand(
      "compare", "Quantize with several methods and compare them against the fp32 model");
  sub->add_option("model", a->model, "GGUF file or Hugging Face folder (full precision)")
      ->required();
  sub->add_option("--methods", a->methods, "Comma-separated: fp, rtn, gptq, awq, awq+gptq")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--gguf-types,--gguf_types", a->gguf_types,
                  "Also GGUF files of these llama.cpp types (e.g. Q4_0,Q4_K_M), plain rounding "
                  "and AWQ each (GGUF inputs)")
      ->delimiter(',');
  sub->add_option("--w-bit,--w_bit", a->w_bit, "Weight bits (2-8)")->capture_default_str();
  sub->add_option("--q-group-size,--q_group_size", a->q_group_size,
                  "Group size (32, 64, 128, 256, -1)")
      ->capture_default_str();
  sub->add_option("--zero-point,--zero_point", a->zero_point, "Zero points (true/false)")
      ->capture_default_str();
  sub->add_option("--calib-data,--calib_data", a->calib_data,
                  "Calibration text for every method (default: Emma)");
  sub->add_option("--max-calib-samples,--max_calib_samples", a->max_calib_samples,
                  "Calibration samples")
      ->capture_default_str();
  sub->add_option("--max-calib-seq-len,--max_calib_seq_len", a->max_calib_seq_len,
                  "Calibration block length in tokens")
      ->capture_default_str();
  sub->add_option("--text", a->text, "Held-out evaluation text (default: Pride and Prejudice)");
  sub->add_option("--max-tokens", a->max_tokens, "Evaluate this many tokens of the text")
      ->capture_default_str();
  sub->add_option("--ctx", a->ctx, "Evaluation window in tokens")->capture_default_str();
  sub->add_option("--out-dir", a->out_dir,
                  "Keep each method's checkpoint in this folder (default: a temporary folder)");
  sub->add_option("--markdown", a->markdown, "Also write the table as Markdown to this file");
  sub->add_flag("--json", a->json, "Print the results as JSON");
  sub->add_flag("-q,--quiet", a->quiet, "No progress on stderr");
  return [a] { return RunCompare(*a); };
}

}  // namespace awq::cli
