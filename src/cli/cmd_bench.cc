// `awq bench [MODEL | --synthetic llama2-7b]`: the machine's memory bandwidth, then prefill and
// decode throughput of the model (and of its fp32 baseline with --fp32-baseline), all in one
// run, with decode's weight traffic as a share of the measured bandwidth.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "awq/bench.h"
#include "awq/error.h"
#include "awq/int4_kernels.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "cli/commands.h"

namespace awq::cli {

namespace {
struct BenchArgs {
  std::string model;
  std::string synthetic;
  int64_t layers = 8;
  int64_t group_size = 128;
  int64_t prompt_tokens = 512;
  int64_t gen_tokens = 128;
  int reps = 3;
  bool fp32_baseline = false;
  bool int8_lm_head = false;
  bool fp32_prompt = false;
  bool skip_memory = false;
  bool memory_only = false;
  bool warmup = false;
  bool token_paired = false;
  bool json = false;
};

struct Entry {
  std::string name;
  BenchResult r;
};

Model LoadSubject(const BenchArgs& a, bool baseline) {
  if (!a.synthetic.empty()) {
    SyntheticOptions o;
    o.int4 = !baseline;
    o.f16_head = !baseline;
    o.group_size = a.group_size;
    return Model::Synthetic(Llama2_7bConfig(a.layers), o);
  }
  return Model::Load(a.model,
                     LoadOptions{.int4 = !baseline, .int8_lm_head = a.int8_lm_head && !baseline});
}

nlohmann::json ToJson(const Entry& e) {
  nlohmann::json j = {{"name", e.name},
                      {"prompt_tokens", e.r.prompt_tokens},
                      {"gen_tokens", e.r.gen_tokens},
                      {"prefill_tokens_per_s", e.r.prefill_tokens_per_s},
                      {"decode_tokens_per_s", e.r.decode_tokens_per_s},
                      {"prefill_runs", e.r.prefill_runs},
                      {"decode_runs", e.r.decode_runs},
                      {"weight_bytes_per_token", e.r.weight_bytes_per_token},
                      {"kv_cache_bytes_per_token", e.r.kv_bytes_per_token},
                      {"decode_weight_gb_per_s", e.r.decode_weight_gb_per_s}};
  if (!e.r.triad_runs.empty()) {
    j["triad_gb_per_s_runs"] = e.r.triad_runs;
    j["read_gb_per_s_runs"] = e.r.read_runs;
    j["decode_share_of_triad"] = e.r.decode_share_of_triad;
    j["decode_share_of_read"] = e.r.decode_share_of_read;
  }
  if (!e.r.token_read_shares.empty()) {
    j["decode_token_share_of_read"] = e.r.decode_token_share_of_read;
    j["decode_token_share_of_read_with_kv"] = e.r.decode_token_share_of_read_with_kv;
    j["decode_token_pairs"] = e.r.token_read_shares.size();
  }
  return j;
}

// The bandwidth measured around every run of every model: median, lowest and highest.
struct BandwidthSummary {
  double median = 0, low = 0, high = 0;
};
BandwidthSummary Summarize(const std::vector<Entry>& entries, bool triad) {
  std::vector<double> v;
  for (const Entry& e : entries) {
    const std::vector<double>& runs = triad ? e.r.triad_runs : e.r.read_runs;
    v.insert(v.end(), runs.begin(), runs.end());
  }
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

// --memory-only: the read and triad loops of every benchmark run, alone, so that a script timing
// another program (bench/peers) divides by the same bandwidth figure.
int RunMemoryOnly(const BenchArgs& a) {
  ThreadPool& pool = ThreadPool::Global();
  const MemoryBandwidth bw = MeasureMemoryBandwidth(pool, 256ll << 20, std::max(a.reps, 1));
  if (a.json) {
    const nlohmann::json j = {{"threads", pool.size()},
                              {"bytes_per_array", bw.bytes_per_array},
                              {"triad_gb_per_s", bw.triad_gb_per_s},
                              {"read_gb_per_s", bw.read_gb_per_s}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("threads: %d, 256 MiB arrays, best of %d: triad %.1f GB/s, read %.1f GB/s\n",
                pool.size(), std::max(a.reps, 1), bw.triad_gb_per_s, bw.read_gb_per_s);
  }
  return 0;
}

int RunBench(const BenchArgs& a) {
  if (a.memory_only) return RunMemoryOnly(a);
  if (a.model.empty() == a.synthetic.empty()) {
    throw Error("bench: give either a MODEL path or --synthetic llama2-7b");
  }
  if (!a.synthetic.empty() && a.synthetic != "llama2-7b") {
    throw Error("bench: --synthetic " + a.synthetic + " is not a known shape (known: llama2-7b)");
  }
  if (a.token_paired && a.skip_memory) {
    throw Error(
        "bench: --token-paired-read times the read loop after every decode step; it "
        "cannot be combined with --no-memory");
  }
  if (!a.synthetic.empty() && a.layers < 1) {
    throw Error("bench: --layers " + std::to_string(a.layers) + " must be positive");
  }
  if (!a.model.empty() && !std::filesystem::exists(a.model)) {
    throw Error(a.model + ": no such file or folder");
  }
  ThreadPool& pool = ThreadPool::Global();
  // The kernels the int4 model's products will run (AWQ_INT4_KERNEL included), so that a forced
  // or mistaken choice shows next to its figures.
  std::string kernel =
      std::string(Int4KernelName(ResolveInt4Kernel(
          a.fp32_prompt ? Int4Kernel::kAuto : Int4Kernel::kAutoInt8, a.prompt_tokens))) +
      " prompt, " + Int4KernelName(ResolveInt4Kernel(Int4Kernel::kAutoInt8, 1)) + " decode";
  BenchOptions o;
  o.prompt_tokens = a.prompt_tokens;
  o.gen_tokens = a.gen_tokens;
  o.reps = a.reps;
  o.measure_bandwidth = !a.skip_memory;
  o.warmup = a.warmup;
  o.token_paired_read = a.token_paired;
  const std::string subject = a.synthetic.empty() ? a.model
                                                  : "synthetic " + a.synthetic + ", " +
                                                        std::to_string(a.layers) + " layers";
  // Both models are loaded first and their repetitions interleaved (BenchModels), so that the
  // host's noise falls on both alike; the ratios pair the runs of the same repetition.
  std::vector<std::unique_ptr<Model>> models;
  std::vector<std::string> names;
  for (const bool baseline : {false, true}) {
    if (baseline && !a.fp32_baseline) break;
    const auto t0 = std::chrono::steady_clock::now();
    auto m = std::make_unique<Model>(LoadSubject(a, baseline));
    if (baseline && !models[0]->uses_int4()) {
      std::fprintf(stderr, "the model already runs in fp32; no separate baseline\n");
      break;
    }
    // The int4 model runs as awq generate does: int8 activations for the prompt too, unless
    // --fp32-prompt (then exactly as awq eval).
    if (m->uses_int4() && !a.fp32_prompt) m->set_int4_kernel(Int4Kernel::kAutoInt8);
    std::string what = m->uses_int4()
                           ? std::string(a.fp32_prompt ? "int4 (fp32 prompt)" : "int4 (int8 act.)")
                           : "fp32";
    if (m->weights().lm_head8 != nullptr) what += ", int8 head";
    std::fprintf(stderr, "%s %s: %lld parameters, %.1f MB of weights per token, ready in %.1fs\n",
                 baseline ? "baseline" : "model", what.c_str(),
                 static_cast<long long>(m->ParameterCount()), m->DecodeWeightBytes() / 1e6,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    names.push_back(what);
    models.push_back(std::move(m));
  }
  std::fprintf(
      stderr, "running %d x (prefill %lld + decode %lld tokens) per model, interleaved...\n",
      a.reps, static_cast<long long>(a.prompt_tokens), static_cast<long long>(a.gen_tokens));
  std::vector<const Model*> subjects;
  for (const auto& m : models) subjects.push_back(m.get());
  const std::vector<BenchResult> results = BenchModels(subjects, o);
  // The automatic choice races ways of computing the same bits on the first calls (Int4Linear:
  // the GEMV's tuning, and VNNI against AVX2 where both run); which one won shows next to the
  // figures.
  const std::string races = Int4KernelRaces();
  if (!races.empty()) kernel += " (raced: " + races + ")";
  std::vector<Entry> entries;
  for (size_t i = 0; i < results.size(); ++i) entries.push_back({names[i], results[i]});
  double prefill_ratio = 0, decode_ratio = 0;
  if (entries.size() == 2) {
    prefill_ratio = MedianPairedRatio(entries[0].r.prefill_runs, entries[1].r.prefill_runs);
    decode_ratio = MedianPairedRatio(entries[0].r.decode_runs, entries[1].r.decode_runs);
  }
  const BandwidthSummary triad = Summarize(entries, true), read = Summarize(entries, false);
  if (a.json) {
    nlohmann::json j = {{"model", subject},
                        {"threads", pool.size()},
                        {"int4_kernel", kernel},
                        {"fp32_sgemm", SgemmInUse()}};
    if (!a.skip_memory) {
      j["memory"] = {{"bytes_per_array", 256ll << 20},  {"triad_gb_per_s", triad.median},
                     {"triad_gb_per_s_low", triad.low}, {"triad_gb_per_s_high", triad.high},
                     {"read_gb_per_s", read.median},    {"read_gb_per_s_low", read.low},
                     {"read_gb_per_s_high", read.high}};
    }
    j["results"] = nlohmann::json::array();
    for (const Entry& e : entries) j["results"].push_back(ToJson(e));
    if (entries.size() == 2) {
      j["int4_over_fp32"] = {{"prefill", prefill_ratio}, {"decode", decode_ratio}};
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("model: %s\nthreads: %d, int4 kernels: %s, fp32 sgemm: %s\n", subject.c_str(),
              pool.size(), kernel.c_str(), SgemmInUse().c_str());
  if (!a.skip_memory) {
    std::printf(
        "memory bandwidth (256 MiB arrays, measured before the first run and after every run): "
        "triad %.1f GB/s (%.1f-%.1f), read %.1f GB/s (%.1f-%.1f)\n",
        triad.median, triad.low, triad.high, read.median, read.low, read.high);
  }
  std::printf("\n%-14s %12s %9s %14s %13s %12s %9s %9s\n", "weights", "MB/token", "KV MB",
              "prefill tok/s", "decode tok/s", "decode GB/s", "of triad", "of read");
  for (const Entry& e : entries) {
    std::printf("%-14s %12.1f %9.1f %14.1f %13.2f %12.2f", e.name.c_str(),
                e.r.weight_bytes_per_token / 1e6, e.r.kv_bytes_per_token / 1e6,
                e.r.prefill_tokens_per_s, e.r.decode_tokens_per_s, e.r.decode_weight_gb_per_s);
    if (a.skip_memory) {
      std::printf("\n");
    } else {
      std::printf(" %8.1f%% %8.1f%%\n", 100 * e.r.decode_share_of_triad,
                  100 * e.r.decode_share_of_read);
    }
    if (!e.r.token_read_shares.empty()) {
      std::printf(
          "%-14s token-paired read: weights %.1f%%, weights + KV %.1f%% (median of %zu steps)\n",
          "", 100 * e.r.decode_token_share_of_read, 100 * e.r.decode_token_share_of_read_with_kv,
          e.r.token_read_shares.size());
    }
  }
  if (entries.size() == 2) {
    std::printf("%-14s %12s %9s %13.2fx %12.2fx\n", "int4 / fp32", "", "", prefill_ratio,
                decode_ratio);
  }
  std::printf(
      "(prefill: %lld-token prompt; decode: %lld tokens after it; medians of %d interleaved runs;"
      " ratios: median of the runs' paired ratios;\n"
      " of triad / of read: each run's decode GB/s over the better of the bandwidths measured"
      " just before and just after it, median over the runs;\n"
      " decode GB/s counts weights only; each step also reads the fp16 KV cache, KV MB on"
      " average)\n",
      static_cast<long long>(a.prompt_tokens), static_cast<long long>(a.gen_tokens), a.reps);
  if (a.token_paired) {
    std::printf(
        "(token-paired read: each decode step's weight GB/s over that of one pass of the read loop"
        " over the same bytes right after it, median over every step of every run)\n");
  }
  return 0;
}
}  // namespace

Runner AddBenchCommand(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* sub = app.add_subcommand(
      "bench", "Measure prefill/decode throughput against the memory bandwidth of this machine");
  sub->add_option("model", args->model,
                  "GGUF file or Hugging Face folder (4-bit AWQ folders run "
                  "on the int4 kernels)");
  sub->add_option("--synthetic", args->synthetic,
                  "Benchmark a model with random 4-bit weights generated in memory instead: "
                  "llama2-7b (Llama-2-7B layer shapes)");
  sub->add_option("--layers", args->layers, "Decoder layers of the synthetic model")
      ->capture_default_str();
  sub->add_option("--q-group-size", args->group_size, "Group size of the synthetic int4 weights")
      ->capture_default_str();
  sub->add_option("--prompt-tokens", args->prompt_tokens, "Prompt length for prefill")
      ->capture_default_str();
  sub->add_option("--gen-tokens", args->gen_tokens, "Tokens generated for decode")
      ->capture_default_str();
  sub->add_option("--reps", args->reps, "Repetitions (the median is reported)")
      ->capture_default_str();
  sub->add_flag("--fp32-baseline", args->fp32_baseline,
                "Also run the same model with fp32 weights (dequantized, or random for "
                "--synthetic) and print the int4/fp32 ratios");
  sub->add_flag("--lm-head-int8", args->int8_lm_head,
                "Run the model (not the fp32 baseline) with its LM head quantized to int8 per row");
  sub->add_flag("--fp32-prompt", args->fp32_prompt,
                "Run the 4-bit model's prompt with fp32 activations (as awq eval) instead of "
                "int8 ones (as awq generate)");
  sub->add_flag("--no-memory", args->skip_memory, "Skip the memory bandwidth measurement");
  sub->add_flag("--warmup", args->warmup,
                "One untimed prefill and decode step per model before the timed runs");
  sub->add_flag("--token-paired-read", args->token_paired,
                "After every decode step, time one pass of the read loop over the step's weight "
                "bytes, and report the median of the steps' shares of it (decode takes twice as "
                "long)");
  sub->add_flag("--memory-only", args->memory_only,
                "Only measure the memory bandwidth (best of --reps rounds of the read and triad "
                "loops) and exit");
  sub->add_flag("--json", args->json, "Print the results as JSON");
  return [args] { return RunBench(*args); };
}

}  // namespace awq::cli
