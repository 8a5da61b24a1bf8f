#!/usr/bin/env python3
"""Checks that an AWQ checkpoint of a recurrent model (Mamba, RWKV) written by awq.cpp is, once
its linears are dequantized with AutoAWQ's unpacking, the model transformers runs with the same
perplexity as awq.cpp measures on it.

Usage:
  build/awq eval OUT --ppl TEXT --ctx 64 --save-ids /tmp/ids.json --json > /tmp/eval.json
  python3 tools/check_recurrent_awq.py OUT /tmp/ids.json --ctx 64 --expect-json /tmp/eval.json

Every <module>.qweight/.qzeros/.scales of OUT is dequantized with the numpy transcription of
AutoAWQ's dequantize_gemm (tools/check_awq_layout.py) into <module>.weight (fp32); every other
tensor is widened to fp32 (exact from fp16); config.json loses quantization_config. The folder
is loaded with AutoModelForCausalLM (fp32, transformers' plain torch paths) and scored under
awq.cpp's perplexity protocol: windows of --ctx ids, each from a fresh state, every position
predicting the next id. The perplexity must match awq.cpp's within --rtol (default 1e-4: both
run fp32 on the same weights, differing by summation order only).
"""
import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file


def load_layout_tool():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_awq_layout.py")
    spec = importlib.util.spec_from_file_location("check_awq_layout", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def dequantized_folder(awq_dir, out_dir):
    """Writes out_dir: config.json without quantization_config, model.safetensors in fp32."""
    layout = load_layout_tool()
    with open(os.path.join(awq_dir, "config.json")) as f:
        cfg = json.load(f)
    q = cfg.pop("quantization_config")
    assert q["quant_method"] == "awq" and q["version"] == "gemm", q
    tensors = {}
    for name in sorted(os.listdir(awq_dir)):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(awq_dir, name)))
    out, n_quantized = {}, 0
    for name, t in tensors.items():
        if name.endswith(".qweight"):
            m = name[: -len(".qweight")]
            w = layout.numpy_dequantize_gemm(t, tensors[m + ".qzeros"],
                                             tensors[m + ".scales"].astype(np.float32),
                                             q["bits"], q["group_size"])
            out[m + ".weight"] = np.ascontiguousarray(w.T.astype(np.float32))
            n_quantized += 1
        elif not (name.endswith(".qzeros") or name.endswith(".scales")):
            out[name] = t.astype(np.float32)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_file(out, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    return cfg["model_type"], n_quantized


def perplexity(model, ids, ctx):
    import torch

    nll, n = 0.0, 0
    for start in range(0, len(ids) - ctx + 1, ctx):
        window = ids[start:start + ctx]
        with torch.no_grad():
            logits = model(torch.tensor([window]), use_cache=False).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        for t in range(ctx - 1):
            nll -= float(logp[t, window[t + 1]])
            n += 1
    return math.exp(nll / n), n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("awq_dir")
    ap.add_argument("ids", help="JSON array of token ids (awq eval --save-ids)")
    ap.add_argument("--ctx", type=int, required=True)
    ap.add_argument("--expect-json", help="awq eval --json output to compare with")
    ap.add_argument("--rtol", type=float, default=1e-4)
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    with open(args.ids) as f:
        ids = json.load(f)
    tmp = tempfile.mkdtemp(prefix="recurrent_awq_")
    try:
        model_type, n_quantized = dequantized_folder(args.awq_dir, tmp)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            tmp, dtype=torch.float32).eval()
        ppl, n = perplexity(model, ids, args.ctx)
    finally:
        shutil.rmtree(tmp)
    print(f"{model_type}: {n_quantized} dequantized linears, transformers perplexity {ppl:.6f} "
          f"over {n} predicted tokens")
    if args.expect_json:
        with open(args.expect_json) as f:
            expect = json.load(f)
        ref = float(expect["perplexity"])
        rel = abs(ppl - ref) / ref
        print(f"awq.cpp perplexity {ref:.6f}, relative difference {rel:.3g}")
        if rel > args.rtol:
            sys.exit(f"perplexities differ by {rel:.3g} > {args.rtol}")


if __name__ == "__main__":
    main()
