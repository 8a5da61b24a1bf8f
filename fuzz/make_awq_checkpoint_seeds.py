#!/usr/bin/env python3
"""Writes the seed inputs of awq_checkpoint_fuzz (fuzz/seeds/awq_checkpoint_fuzz/): one small
linear (in 64, out 16, group 32) in each layout awq.cpp reads - AutoAWQ GEMM and GEMV, our
awqcpp_packed at 3 bits - with its settings in config.json or in the legacy quant_config.json.

Seed format (awq_checkpoint_fuzz.cc): [u16 n1][config.json][u16 n2][quant_config.json]
[model.safetensors], little-endian lengths. Standard library only; deterministic.
"""
import json
import os
import random
import struct
import sys

MODULE = "model.layers.0.mlp.down_proj"
IN, OUT, GROUP = 64, 16, 32


def safetensors(tensors):
    """tensors: list of (name, dtype, shape, bytes) -> safetensors file bytes."""
    header, offset, blobs = {}, 0, []
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def words(rng, n):
    return struct.pack("<%di" % n, *[rng.randrange(-2**31, 2**31) for _ in range(n)])


def halfs(rng, n):
    # fp16 scales between 2^-8 and 2^-5: exponent 7..10, random mantissa.
    return struct.pack("<%dH" % n, *[(rng.randrange(7, 11) << 10) | rng.randrange(1024)
                                     for _ in range(n)])


def seed(config, legacy, model):
    c = json.dumps(config).encode() if config is not None else b""
    q = json.dumps(legacy).encode() if legacy is not None else b""
    return struct.pack("<H", len(c)) + c + struct.pack("<H", len(q)) + q + model


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(19)
    groups = IN // GROUP
    base = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}

    def quant(version, bits):
        return {"bits": bits, "group_size": GROUP, "quant_method": "awq", "version": version,
                "zero_point": True, "modules_to_not_convert": None}

    gemm = safetensors([
        (MODULE + ".qweight", "I32", [IN, OUT // 8], words(rng, IN * OUT // 8)),
        (MODULE + ".qzeros", "I32", [groups, OUT // 8], words(rng, groups * OUT // 8)),
        (MODULE + ".scales", "F16", [groups, OUT], halfs(rng, groups * OUT)),
        ("model.norm.weight", "F16", [IN], halfs(rng, IN)),
    ])
    # GEMV: rows are output channels; zeros padded to W = 4 words at group 32, scales to 8W.
    w = 4
    gemv = safetensors([
        (MODULE + ".qweight", "I32", [OUT, IN // 8], words(rng, OUT * IN // 8)),
        (MODULE + ".qzeros", "I32", [OUT, w], words(rng, OUT * w)),
        (MODULE + ".scales", "F16", [OUT, 8 * w], halfs(rng, OUT * 8 * w)),
    ])
    # awqcpp_packed at 3 bits: each row a bit stream of OUT codes, ceil(16 * 3 / 32) = 2 words.
    pw = (OUT * 3 + 31) // 32
    packed = safetensors([
        (MODULE + ".qweight", "I32", [IN, pw], words(rng, IN * pw)),
        (MODULE + ".qzeros", "I32", [groups, pw], words(rng, groups * pw)),
        (MODULE + ".scales", "F16", [groups, OUT], halfs(rng, groups * OUT)),
    ])
    seeds = {
        "gemm_config": seed(dict(base, quantization_config=quant("gemm", 4)), None, gemm),
        "gemm_legacy": seed(base, {"zero_point": True, "q_group_size": GROUP, "w_bit": 4,
                                   "version": "GEMM"}, gemm),
        "gemv_config": seed(dict(base, quantization_config=quant("gemv", 4)), None, gemv),
        "packed_3bit": seed(dict(base, quantization_config=dict(
            quant("awqcpp_packed", 4), awqcpp_modules={MODULE: {"bits": 3, "group_size": GROUP}})),
            None, packed),
    }
    for name, blob in seeds.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(blob)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "awq_checkpoint_fuzz"))
