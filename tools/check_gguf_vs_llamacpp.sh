#!/usr/bin/env bash
# Checks that `awq quantize --format gguf --method rtn` writes, tensor for tensor, the same types and
# the same bytes as llama.cpp's own `llama-quantize` (no importance matrix) for each file type:
# the proof that awq.cpp's per-tensor type rule, its ggml quantizers, q/k row order, norms and
# tensor shapes are llama.cpp's. AWQ files differ from these only in the values the search chose.
#
# Needs llama.cpp built by tools/build_llamacpp.sh (a measuring reference, never a build
# dependency) and gguf-py from its source tree. Usage:
#   tools/check_gguf_vs_llamacpp.sh [MODEL.gguf] [TYPE ...]
# Defaults: the SmolLM2 GGUF of assets/, types Q4_0 Q4_K_M Q5_K_M Q8_0 Q3_K_M.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-assets/models/SmolLM2-135M-Instruct.Q4_1.gguf}
shift || true
types=("$@")
[ ${#types[@]} -eq 0 ] && types=(Q4_0 Q4_K_M Q5_K_M Q8_0 Q3_K_M)
bin=assets/peers/llama.cpp-build/bin
gguf_py=assets/peers/llama.cpp-src/gguf-py
awq=${AWQ_BIN:-build/awq}
py=${PYTHON:-python3}
[ -x "$bin/llama-quantize" ] || { echo "llama.cpp is not built: run tools/build_llamacpp.sh" >&2; exit 1; }
work=${WORK_DIR:-out/gguf-check}
mkdir -p "$work"
name=$(basename "$model" .gguf)
# The full-precision baseline both tools start from: the input dequantized to F32 by llama.cpp.
f32="$work/$name-F32.gguf"
[ -f "$f32" ] || "$bin/llama-quantize" --allow-requantize "$model" "$f32" F32 > "$work/$name-F32.log" 2>&1
status=0
for t in "${types[@]}"; do
  ref="$work/$name-$t-llama.gguf"
  ours="$work/$name-$t-awq-rtn.gguf"
  "$bin/llama-quantize" "$f32" "$ref" "$t" 2 > "$work/$name-$t-llama.log" 2>&1
  "$awq" quantize "$f32" "$ours" --method rtn --gguf-type "$t" --overwrite -q > /dev/null
  PYTHONPATH="$gguf_py" "$py" - "$ref" "$ours" "$t" <<'PY' || status=1
import sys
import gguf
ref, ours, t = sys.argv[1:4]
a = {x.name: x for x in gguf.GGUFReader(ref).tensors}
b = {x.name: x for x in gguf.GGUFReader(ours).tensors}
same = 0
bad = []
for n, x in a.items():
    y = b.get(n)
    if y is None:
        bad.append(f"{n}: missing")
    elif x.tensor_type != y.tensor_type:
        bad.append(f"{n}: {x.tensor_type.name} vs {y.tensor_type.name}")
    elif x.data.tobytes() != y.data.tobytes():
        bad.append(f"{n}: bytes differ ({x.tensor_type.name})")
    else:
        same += 1
bad += [f"{n}: not in llama.cpp's file" for n in b if n not in a]
print(f"{t}: {same} of {len(a)} tensors byte-identical to llama-quantize" +
      ("" if not bad else f"; {len(bad)} differ: " + "; ".join(bad[:5])))
sys.exit(1 if bad else 0)
PY
done
exit $status
