// `awq eval MODEL --ppl FILE`: perplexity over non-overlapping windows (awq.cpp's protocol, or
// llama-perplexity's with --protocol llama.cpp), progress on stderr, the result on stdout (text or
// --json).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "awq/error.h"
#include "awq/eval.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "cli/commands.h"
#include "cli/load.h"
#include "cli/progress.h"

namespace awq::cli {

namespace {
struct EvalArgs {
  std::string model;
  bool int8_lm_head = false;
  std::string ppl_file;
  int64_t ctx = 2048;
  int64_t max_tokens = -1;
  std::string protocol = "awq";
  std::string save_ids;
  bool json = false;
  bool quiet = false;
};

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int RunEval(const EvalArgs& a) {
  const PerplexityProtocol protocol = ParsePerplexityProtocol(a.protocol);
  auto t0 = std::chrono::steady_clock::now();
  const Model model = Model::Load(a.model, LoadOptions{.int8_lm_head = a.int8_lm_head});
  const Tokenizer tok = Tokenizer::ForModel(a.model);
  if (!a.quiet) {
    std::fprintf(stderr, "loaded %s: %lld parameters, %lld layers, in %.1fs (%d threads, %s)\n",
                 a.model.c_str(), static_cast<long long>(model.ParameterCount()),
                 static_cast<long long>(model.config().num_hidden_layers), Since(t0),
                 ThreadPool::Global().size(), model.uses_int4() ? "int4 kernels" : "fp32 products");
  }
  t0 = std::chrono::steady_clock::now();
  std::string text = ReadText(a.ppl_file);
  // llama.cpp's -f drops one trailing newline from the file (common/arg.cpp).
  if (protocol == PerplexityProtocol::kLlamaCpp && !text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  // Plain text: special-token spellings inside it are text, and the model's BOS rule applies
  // (llama-perplexity's common_tokenize(text, add_special=true, parse_special=false) alike).
  const std::vector<int32_t> ids = tok.Encode(text, /*add_special=*/true, /*parse_special=*/false);
  if (!a.save_ids.empty()) {
    std::ofstream f(a.save_ids);
    f << nlohmann::json(ids).dump() << "\n";
    if (!f) throw Error("cannot write " + a.save_ids);
  }
  if (!a.quiet) {
    std::fprintf(stderr, "tokenized %s: %zu bytes -> %zu tokens in %.1fs\n", a.ppl_file.c_str(),
                 text.size(), ids.size(), Since(t0));
  }
  ProgressBar bar("perplexity", "tok", !a.quiet);
  PerplexityOptions opt;
  opt.ctx = a.ctx;
  opt.max_tokens = a.max_tokens;
  opt.protocol = protocol;
  // llama-perplexity writes BOS over each chunk's first token when the vocabulary adds BOS.
  opt.bos_id = tok.add_bos() ? tok.bos_id() : -1;
  opt.progress = [&](int64_t done, int64_t total) { bar.Update(done, total); };
  bar.Update(0, 1);
  const PerplexityResult r = EvaluatePerplexity(model, ids, opt);
  bar.Finish();
  if (a.json) {
    nlohmann::json j = {{"model", a.model},
                        {"text", a.ppl_file},
                        {"protocol", PerplexityProtocolName(protocol)},
                        {"text_tokens", ids.size()},
                        {"ctx", a.ctx},
                        {"n_windows", r.n_windows},
                        {"n_tokens", r.n_tokens},
                        {"n_predicted", r.n_predicted},
                        {"nll_sum", r.nll_sum},
                        {"perplexity", r.perplexity},
                        {"seconds", r.seconds},
                        {"tokens_per_second", r.tokens_per_second}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf(
        "perplexity %.4f over %lld windows of %lld tokens (%lld predicted, %s protocol), %.1f "
        "tok/s\n",
        r.perplexity, static_cast<long long>(r.n_windows), static_cast<long long>(a.ctx),
        static_cast<long long>(r.n_predicted), PerplexityProtocolName(protocol),
        r.tokens_per_second);
  }
  return 0;
}
}  // namespace

Runner AddEvalCommand(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* sub = app.add_subcommand("eval", "Evaluate a model: perplexity on a text file");
  sub->add_option("model", args->model, "GGUF file or Hugging Face folder")->required();
  sub->add_option("--ppl", args->ppl_file, "UTF-8 text file to measure perplexity on ('-': stdin)")
      ->required();
  sub->add_option("--ctx", args->ctx, "Window length in tokens")->capture_default_str();
  sub->add_option("--max-tokens", args->max_tokens,
                  "Evaluate only the first N tokens of the text (-1: all)")
      ->capture_default_str();
  sub->add_option("--protocol", args->protocol,
                  "awq: every position of each window scored; llama.cpp: llama-perplexity's "
                  "(second half of each window scored, BOS over its first token when the model "
                  "adds BOS, one trailing newline of the file dropped)")
      ->check(CLI::IsMember({"awq", "llama.cpp"}))
      ->capture_default_str();
  sub->add_option("--save-ids", args->save_ids,
                  "Write the text's token ids (as the protocol tokenizes it) to FILE as a JSON "
                  "array");
  sub->add_flag("--json", args->json, "Print the result as JSON");
  sub->add_flag(
      "--lm-head-int8", args->int8_lm_head,
      "Quantize the LM head to int8 per row at load (faster decode, small accuracy cost)");
  sub->add_flag("-q,--quiet", args->quiet, "No progress or load messages on stderr");
  return [args] { return RunEval(*args); };
}

}  // namespace awq::cli
