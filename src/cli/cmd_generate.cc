// `awq generate MODEL --prompt ...`: greedy or sampled text generation streamed to stdout.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "awq/int4_kernels.h"
#include "awq/model.h"
#include "awq/sampling.h"
#include "cli/commands.h"
#include "cli/load.h"

namespace awq::cli {

namespace {
struct GenerateArgs {
  std::string model;
  bool int8_lm_head = false;
  bool fp32_prompt = false;
  std::string prompt;
  std::string prompt_file;
  bool chat = false;
  std::string system;
  int64_t max_new_tokens = 128;
  SamplingParams sampling;
  int64_t ctx = 0;
  bool quiet = false;
};

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int RunGenerate(const GenerateArgs& a) {
  Model model = Model::Load(a.model, LoadOptions{.int8_lm_head = a.int8_lm_head});
  // Decode always runs on int8 activations (kAuto); prompts too unless asked otherwise.
  if (!a.fp32_prompt) model.set_int4_kernel(Int4Kernel::kAutoInt8);
  const Tokenizer tok = Tokenizer::ForModel(a.model);
  std::string prompt = a.prompt_file.empty() ? a.prompt : ReadText(a.prompt_file);
  std::vector<int32_t> ids;
  if (a.chat) {
    std::vector<ChatMessage> messages;
    if (!a.system.empty()) messages.push_back({"system", a.system});
    messages.push_back({"user", prompt});
    const std::string rendered = tok.ApplyChatTemplate(messages, /*add_generation_prompt=*/true);
    // The template already holds any BOS it wants; its special tokens are parsed as such.
    ids = tok.Encode(rendered, /*add_special=*/false, /*parse_special=*/true);
  } else {
    ids = tok.Encode(prompt, /*add_special=*/true, /*parse_special=*/false);
  }
  if (ids.empty()) throw Error("the prompt is empty after tokenization");
  const int64_t ctx = a.ctx > 0
                          ? a.ctx
                          : std::min<int64_t>(model.config().max_position_embeddings,
                                              static_cast<int64_t>(ids.size()) + a.max_new_tokens);
  if (static_cast<int64_t>(ids.size()) >= ctx) {
    throw Error("the prompt has " + std::to_string(ids.size()) + " tokens, which fills the " +
                std::to_string(ctx) + "-token context");
  }
  KvCache cache = model.NewCache(ctx);
  Sampler sampler(a.sampling);
  StreamingDecoder stream(tok, /*skip_special=*/false);
  const std::vector<int32_t> stops = tok.eos_ids();
  const int64_t d = model.config().hidden_size, v = model.config().vocab_size;
  std::vector<float> hidden(ids.size() * static_cast<size_t>(d)), logits(static_cast<size_t>(v));

  if (!a.chat) std::fputs(prompt.c_str(), stdout);
  const auto t_prefill = std::chrono::steady_clock::now();
  model.Forward(ids.data(), static_cast<int64_t>(ids.size()), cache, hidden.data());
  model.Logits(hidden.data() + (ids.size() - 1) * static_cast<size_t>(d), 1, logits.data());
  const double prefill_s = Since(t_prefill);

  const auto t_decode = std::chrono::steady_clock::now();
  int64_t generated = 0;
  while (generated < a.max_new_tokens && cache.size() < ctx) {
    const int32_t next = sampler.Sample(logits.data(), v);
    ++generated;
    if (std::find(stops.begin(), stops.end(), next) != stops.end()) break;
    std::fputs(stream.Feed(next).c_str(), stdout);
    std::fflush(stdout);
    if (generated == a.max_new_tokens || cache.size() >= ctx) break;
    model.Forward(&next, 1, cache, hidden.data());
    model.Logits(hidden.data(), 1, logits.data());
  }
  std::fputs(stream.Flush().c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  const double decode_s = Since(t_decode);
  if (!a.quiet) {
    std::fprintf(stderr, "prompt: %zu tokens, %.1f tok/s; generated: %lld tokens, %.1f tok/s\n",
                 ids.size(), static_cast<double>(ids.size()) / prefill_s,
                 static_cast<long long>(generated),
                 static_cast<double>(generated) / std::max(decode_s, 1e-9));
  }
  return 0;
}
}  // namespace

Runner AddGenerateCommand(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand("generate", "Generate text from a prompt");
  sub->add_option("model", a->model, "GGUF file or Hugging Face folder")->required();
  auto* p = sub->add_option("-p,--prompt", a->prompt, "Prompt text");
  auto* pf = sub->add_option("--prompt-file", a->prompt_file, "Read the prompt from a file");
  p->excludes(pf);
  sub->add_flag("--chat", a->chat, "Wrap the prompt in the model's chat template");
  sub->add_option("--system", a->system, "System message for --chat");
  sub->add_option("-n,--max-new-tokens", a->max_new_tokens, "Tokens to generate")
      ->capture_default_str();
  sub->add_option("--temperature", a->sampling.temperature, "0 = greedy")->capture_default_str();
  sub->add_option("--top-k", a->sampling.top_k, "Keep the k most likely tokens (0 = all)")
      ->capture_default_str();
  sub->add_option("--top-p", a->sampling.top_p, "Nucleus sampling mass")->capture_default_str();
  sub->add_option("--seed", a->sampling.seed, "Random seed for sampling")->capture_default_str();
  sub->add_option("--ctx", a->ctx, "Context size (default: prompt + new tokens)");
  sub->add_flag(
      "--lm-head-int8", a->int8_lm_head,
      "Quantize the LM head to int8 per row at load (faster decode, small accuracy cost)");
  sub->add_flag("--fp32-prompt", a->fp32_prompt,
                "4-bit models: multiply the prompt with fp32 activations, exactly as awq eval "
                "does, instead of int8 ones (slower prompt, no activation rounding)");
  sub->add_flag("-q,--quiet", a->quiet, "No statistics on stderr");
  return [a] {
    if (a->prompt.empty() && a->prompt_file.empty()) {
      throw Error("generate needs --prompt TEXT or --prompt-file FILE");
    }
    return RunGenerate(*a);
  };
}

}  // namespace awq::cli
