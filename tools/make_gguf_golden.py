#!/usr/bin/env python3
"""Golden fixtures for the GGUF reader and ggml dequantization (tests/gguf_test.cc,
tests/ggml_quants_test.cc), written with the independent Python implementation (gguf-py).

Writes:
  tests/data/gguf_quants_golden.gguf  GGUFWriter output: metadata of every value type (nested
      arrays included), general.alignment = 64, and for each ggml type T a tensor "<t>.raw" of
      type T plus "<t>.expected" (F32) holding gguf.quants.dequantize() of the same bytes.
  tests/data/gguf_model_golden.json   facts read with GGUFReader from the real model
      (assets/models/SmolLM2-135M-Instruct.Q4_1.gguf): counts, metadata, and for a few tensors
      type, ne, offset, byte size, sum / sum of squares / sampled values of the fp32 data.

Usage: python3 tools/make_gguf_golden.py [--model PATH] [--out-dir tests/data]
"""
import argparse
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20240611

# Types gguf-py can quantize: real quantization of Gaussian data (what the model files hold).
QUANTIZABLE = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.BF16]
# K-quants: gguf-py only dequantizes them, so the blocks are random bytes whose fp16 scale
# fields are overwritten with finite values of both signs. Random bytes exercise every bit of
# every field, which quantized data would not. Offsets of the fp16 fields inside each block:
K_HALF_FIELDS = {
    Q.Q2_K: [80, 82],   # scales[16] qs[64] d dmin
    Q.Q3_K: [108],      # hmask[32] qs[64] scales[12] d
    Q.Q4_K: [0, 2],     # d dmin scales[12] qs[128]
    Q.Q5_K: [0, 2],     # d dmin scales[12] qh[32] qs[128]
    Q.Q6_K: [208],      # ql[128] qh[64] scales[16] d
}


def random_half(rng, n):
    # Magnitudes from 1e-5 (fp16 subnormal range starts at 6e-5) to 1, random signs.
    mag = np.exp(rng.uniform(np.log(1e-5), 0.0, size=n))
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return (mag * sign).astype(np.float16)


def quant_fixtures(out_path):
    rng = np.random.default_rng(SEED)
    w = gguf.GGUFWriter(out_path, arch="golden")
    w.add_custom_alignment(64)
    w.add_string("golden.made_by", "tools/make_gguf_golden.py")
    # One key per value type, with values at the edges of their ranges.
    w.add_key_value("t.u8", 200, gguf.GGUFValueType.UINT8)
    w.add_key_value("t.i8", -100, gguf.GGUFValueType.INT8)
    w.add_key_value("t.u16", 60000, gguf.GGUFValueType.UINT16)
    w.add_key_value("t.i16", -30000, gguf.GGUFValueType.INT16)
    w.add_key_value("t.u32", 4000000000, gguf.GGUFValueType.UINT32)
    w.add_key_value("t.i32", -2000000000, gguf.GGUFValueType.INT32)
    w.add_key_value("t.u64", 2**63 + 5, gguf.GGUFValueType.UINT64)
    w.add_key_value("t.i64", -(2**62) - 3, gguf.GGUFValueType.INT64)
    w.add_key_value("t.f32", 0.15625, gguf.GGUFValueType.FLOAT32)
    w.add_key_value("t.f64", 1.0 / 3.0, gguf.GGUFValueType.FLOAT64)
    w.add_key_value("t.bool", True, gguf.GGUFValueType.BOOL)
    w.add_key_value("t.str", "h\u00e9llo \u2713", gguf.GGUFValueType.STRING)
    w.add_array("t.arr_str", ["a", "", "bc"])
    w.add_key_value("t.arr_u8", [1, 2, 255], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT8)
    w.add_key_value("t.arr_i64", [-1, 2**40], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT64)
    w.add_array("t.arr_f32", [0.5, -2.25])
    w.add_array("t.nested", [[1, 2], [3], [4, 5, 6]])

    # Each tensor: 2 rows of 256 (one K super-block or 8 small blocks per row).
    ne0, rows = 256, 2
    data = rng.standard_normal((rows, ne0)).astype(np.float32)
    data[0, :32] = 0.0  # an all-zero block: d = 0 paths
    data[1, 32:64] = np.abs(data[1, 32:64]) + 1.0  # an all-positive block: min > 0 for Q4_1/Q5_1
    tensors = {}
    for qt in QUANTIZABLE:
        raw = gguf.quants.quantize(data, qt)
        tensors[qt] = raw
    # F16 is its own case: the bytes are numpy float16 (includes a subnormal and -0).
    f16 = data.astype(np.float16)
    f16[0, 0] = np.float16(3e-6)
    f16[0, 1] = np.float16(-0.0)
    tensors[Q.F16] = f16.view(np.uint8)
    tensors[Q.F32] = data.view(np.uint8)
    for qt, fields in K_HALF_FIELDS.items():
        block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qt]
        n_blocks = rows * ne0 // block_elems
        raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
        for off in fields:
            raw[:, off:off + 2] = random_half(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
        tensors[qt] = raw.reshape(rows, -1)

    for qt, raw in tensors.items():
        raw = np.ascontiguousarray(raw).view(np.uint8).reshape(rows, -1)
        expected = gguf.quants.dequantize(raw, qt).astype(np.float32).reshape(rows, ne0)
        name = qt.name.lower()
        w.add_tensor(f"{name}.raw", raw, raw_dtype=qt)
        w.add_tensor(f"{name}.expected", expected)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tensor_facts(reader, name):
    t = next(t for t in reader.tensors if t.name == name)
    x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
    flat = x.reshape(-1).astype(np.float64)
    n = flat.size
    idx = sorted({0, 1, 31, 32, n // 3, n // 2, n - 2, n - 1})
    return {
        "name": name,
        "type": int(t.tensor_type),
        "ne": [int(v) for v in t.shape],
        "offset": int(t.data_offset - reader.data_offset),
        "nbytes": int(t.n_bytes),
        "shape": [int(v) for v in x.shape],
        "sum": float(flat.sum()),
        "sum_sq": float((flat * flat).sum()),
        "samples": [[i, float(flat[i])] for i in idx],
    }


def model_facts(model_path, out_path):
    r = gguf.GGUFReader(model_path)
    f = r.fields
    tokens = f["tokenizer.ggml.tokens"].contents()
    merges = f["tokenizer.ggml.merges"].contents()
    token_type = f["tokenizer.ggml.token_type"].contents()
    facts = {
        "made_by": "tools/make_gguf_golden.py",
        "source": os.path.basename(model_path),
        "version": int(f["GGUF.version"].contents()),
        "tensor_count": len(r.tensors),
        "kv_count": int(f["GGUF.kv_count"].contents()),
        "alignment": int(r.alignment),
        "architecture": f["general.architecture"].contents(),
        "block_count": int(f["llama.block_count"].contents()),
        "embedding_length": int(f["llama.embedding_length"].contents()),
        "rope_freq_base": float(f["llama.rope.freq_base"].contents()),
        "rms_epsilon": float(f["llama.attention.layer_norm_rms_epsilon"].contents()),
        "add_bos_token": bool(f["tokenizer.ggml.add_bos_token"].contents()),
        "pre": f["tokenizer.ggml.pre"].contents(),
        "vocab_size": len(tokens),
        "tokens": [[i, tokens[i]] for i in (0, 1, 2, 100, 1000, len(tokens) - 1)],
        "merges_count": len(merges),
        "merges": [[i, merges[i]] for i in (0, 1, len(merges) - 1)],
        "token_type": [[i, int(token_type[i])] for i in (0, 1, 2, 100)],
        "tensors": [
            tensor_facts(r, n)
            for n in ("token_embd.weight", "blk.0.attn_q.weight", "blk.5.ffn_down.weight",
                      "blk.29.attn_v.weight", "blk.0.attn_norm.weight", "output_norm.weight")
        ],
    }
    with open(out_path, "w", encoding="utf-8") as fp:
        json.dump(facts, fp, indent=1, ensure_ascii=False)
        fp.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=os.path.join(REPO, "assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests/data"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    quant_fixtures(os.path.join(args.out_dir, "gguf_quants_golden.gguf"))
    model_facts(args.model, os.path.join(args.out_dir, "gguf_model_golden.json"))


if __name__ == "__main__":
    main()
