// Reading and tokenizing at the speed of the machine: GGUF dequantization of SmolLM2's Q4_1
// weights against a copy of the same fp32 bytes (limit/copy, measured in the same run), and the
// tokenizers on Jane Austen's prose against their growth on a run of one letter (a merge loop
// that went quadratic shows as a time per byte that grows with the run).
//
//   build/bench/parse_bench [--benchmark_filter=tokenize]
//
// Assets come from scripts/setup.sh (AWQ_ASSETS_DIR overrides assets/). Counters: MB/s of output
// floats for the dequantization and the copy, MB/s of input text for the tokenizers.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "awq/gguf.h"
#include "awq/tokenizer.h"
#include "core/mapped_file.h"

namespace {

std::string Asset(const std::string& rel) {
  const char* env = std::getenv("AWQ_ASSETS_DIR");
  return (env != nullptr ? std::string(env) : std::string(AWQ_SOURCE_DIR) + "/assets") + "/" + rel;
}

const awq::GgufFile& Smol() {
  static const awq::GgufFile f =
      awq::GgufFile::Open(Asset("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
  return f;
}

int64_t Q4_1Elements() {
  int64_t n = 0;
  for (const awq::GgufTensorInfo& t : Smol().tensors()) {
    if (t.type != awq::GgmlType::kQ4_1) continue;
    int64_t e = 1;
    for (const int64_t d : t.ne) e *= d;
    n += e;
  }
  return n;
}

// Every Q4_1 tensor of SmolLM2 (106M weights) to fp32.
void BM_GgufDequantQ4_1(benchmark::State& st) {
  for (auto _ : st) {
    for (const awq::GgufTensorInfo& t : Smol().tensors()) {
      if (t.type != awq::GgmlType::kQ4_1) continue;
      const awq::Tensor x = Smol().ReadF32(t);
      benchmark::DoNotOptimize(x.data<float>());
    }
  }
  st.counters["MB_out"] = benchmark::Counter(4.0 * static_cast<double>(Q4_1Elements()) / 1e6,
                                             benchmark::Counter::kIsIterationInvariantRate);
}

// The baseline: copying the same number of floats between two buffers (one thread).
void BM_CopyFloats(benchmark::State& st) {
  const size_t n = static_cast<size_t>(Q4_1Elements());
  const std::vector<float> src(n, 1.0f);
  std::vector<float> dst(n, 0.0f);
  for (auto _ : st) {
    std::memcpy(dst.data(), src.data(), n * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
  }
  st.counters["MB_out"] = benchmark::Counter(4.0 * static_cast<double>(n) / 1e6,
                                             benchmark::Counter::kIsIterationInvariantRate);
}

const std::string& Emma() {
  static const std::string text = awq::ReadFileToString(Asset("text/emma.txt"));
  return text;
}

void Encode(benchmark::State& st, const char* model, const std::string& text) {
  const awq::Tokenizer tok = awq::Tokenizer::FromGguf(awq::GgufFile::Open(Asset(model)));
  for (auto _ : st) benchmark::DoNotOptimize(tok.Encode(text, false).data());
  st.counters["MB_in"] = benchmark::Counter(static_cast<double>(text.size()) / 1e6,
                                            benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("limit/copy_floats", BM_CopyFloats)->UseRealTime();
  benchmark::RegisterBenchmark("gguf/dequant_q4_1", BM_GgufDequantQ4_1)->UseRealTime();
  for (const char* model :
       {"models/SmolLM2-135M-Instruct.Q4_1.gguf", "models/gemma-3-270m-q4_k_m.gguf"}) {
    const std::string name = std::strstr(model, "gemma") != nullptr ? "gemma3" : "smollm2";
    benchmark::RegisterBenchmark(("tokenize/" + name + "/emma").c_str(),
                                 [model](benchmark::State& st) { Encode(st, model, Emma()); });
    for (const int n : {20000, 200000}) {
      benchmark::RegisterBenchmark(
          ("tokenize/" + name + "/a_x" + std::to_string(n)).c_str(),
          [model, n](benchmark::State& st) { Encode(st, model, std::string(n, 'a')); });
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
