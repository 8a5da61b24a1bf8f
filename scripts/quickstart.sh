#!/usr/bin/env bash
# The main job on the default model (README): set up, quantize SmolLM2-135M-Instruct with AWQ
# (4-bit, group 64, calibrated on Emma), show perplexity before and after on the first 32k tokens
# of Pride and Prejudice, and generate text with the quantized model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
model=assets/models/SmolLM2-135M-Instruct.Q4_1.gguf
text=assets/text/prideprejudice.txt
out=out/SmolLM2-135M-Instruct-awq-w4-g64
mkdir -p out
echo
echo "== AWQ quantization: w_bit 4, q_group_size 64, zero_point on, calibration: Emma (128 x 512) =="
./build/awq quantize "$model" "$out" --q-group-size 64 --overwrite
echo
echo "== perplexity before (fp32, dequantized GGUF): first 32768 tokens of Pride and Prejudice, ctx 2048 =="
./build/awq eval "$model" --ppl "$text" --ctx 2048 --max-tokens 32768
echo
echo "== perplexity after (AWQ 4-bit) =="
./build/awq eval "$out" --ppl "$text" --ctx 2048 --max-tokens 32768
echo
echo "== generation with the 4-bit model (greedy, chat template) =="
./build/awq generate "$out" --chat --prompt "Who wrote Pride and Prejudice?" -n 64
