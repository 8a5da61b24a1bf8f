#!/usr/bin/env bash
# The main job on the default model (README): set up, then evaluate SmolLM2-135M-Instruct on the
# first 32k tokens of Pride and Prejudice and generate text from it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
model=assets/models/SmolLM2-135M-Instruct.Q4_1.gguf
text=assets/text/prideprejudice.txt
echo
echo "== perplexity of the fp32 (dequantized) model: first 32768 tokens of Pride and Prejudice, ctx 2048 =="
./build/awq eval "$model" --ppl "$text" --ctx 2048 --max-tokens 32768
echo
echo "== generation (greedy, chat template) =="
./build/awq generate "$model" --chat --prompt "Who wrote Pride and Prejudice?" -n 64
