#!/usr/bin/env bash
# Runs every benchmark behind the issue-4 targets on this machine, each with its baseline in the
# same run, and keeps the outputs in out/bench/. Needs a 4-bit folder; by default the one
# scripts/quickstart.sh writes.
#   bash bench/run_all.sh [AWQ_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-out/SmolLM2-135M-Instruct-awq-w4-g64}
mkdir -p out/bench
run() { echo "+ $*" | tee -a out/bench/all.txt; "$@" 2>/dev/null | tee -a out/bench/all.txt; }
: > out/bench/all.txt
# SmolLM2-135M AWQ: decode and prefill against the fp32 model, bandwidth in the same run.
run build/awq bench "$model" --fp32-baseline --reps 5
run build/awq bench "$model" --fp32-baseline --lm-head-int8 --reps 5
# The prompt with fp32 activations, exactly as awq eval runs it (prefill only differs).
run build/awq bench "$model" --fp32-baseline --fp32-prompt --reps 5
# Llama-2-7B shapes, 8 layers (1 GB at 4 bits): decode as a share of the measured bandwidth.
run build/awq bench --synthetic llama2-7b --layers 8 --fp32-baseline --reps 5
run build/awq bench --synthetic llama2-7b --layers 8 --fp32-baseline --fp32-prompt --gen-tokens 16 --reps 5
# Kernels: int4 GEMV/GEMM against fp32 sgemv/sgemm and the measured peaks.
# Five repetitions of each, in random interleaved order, medians only: one run of each in a row
# let a slow phase of the shared host fall on one side of a comparison.
run build/bench/int4_bench --benchmark_min_time=0.2 --benchmark_repetitions=5 \
  --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
  --benchmark_filter='limit/|/(4096x4096|11008x4096|4096x11008|960x576|3072x576|576x1536|49152x576)/'
# Reading and tokenizing: GGUF dequantization against a copy of the same floats, both tokenizers
# on Emma and on runs of one letter (time per byte flat from 20,000 to 200,000 letters).
run build/bench/parse_bench --benchmark_min_time=0.2
