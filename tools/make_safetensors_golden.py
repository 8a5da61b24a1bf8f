#!/usr/bin/env python3
"""Writes the safetensors interop fixtures for tests/safetensors_test.cc.

  tests/data/st_golden.safetensors  written by the reference `safetensors` package (torch API):
                                    every dtype awq.cpp reads, odd shapes, a scalar, an empty
                                    tensor, an F64 tensor (loads, cannot be read) and metadata.
  tests/data/st_golden_plain.safetensors  the same without the F64 tensor and with the default
                                    metadata {"format": "pt"}: the C++ writer must reproduce it
                                    byte for byte.
  tests/data/config_llama31_8b_tf5.json  tests/data/config_llama31_8b.json (the transformers 4.x
                                    file) saved again by the installed transformers 5, which
                                    writes "rope_parameters" and "dtype" instead.
  tests/data/st_golden.json         what the C++ reader must find: per tensor the dtype, shape,
                                    data_offsets, and the values (raw uint16 bits for F16/BF16,
                                    plus their float value).

Also, with --check-cpp FILE_OR_DIR, reads a file (or checkpoint folder) written by the C++ writer
with the reference package and prints every tensor, to check the other direction by hand.

Usage: python3 tools/make_safetensors_golden.py [--out tests/data]
       python3 tools/make_safetensors_golden.py --check-cpp /tmp/out.safetensors
"""
import argparse
import json
import os
import struct
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def golden_tensors():
    g = torch.Generator().manual_seed(1234)
    t = {}
    # Odd shapes on purpose: nothing is a multiple of 8 or 16.
    t["f32.matrix"] = (torch.randn(3, 5, generator=g) * 3).to(torch.float32)
    t["f16.vector"] = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1e-5, 5.96e-8, 0.1, 1 / 3],
                                   dtype=torch.float16)
    t["bf16.cube"] = (torch.randn(2, 3, 1, generator=g) * 100).to(torch.bfloat16)
    t["i32.ids"] = torch.tensor([0, 1, -1, 2147483647, -2147483648, 42, 7], dtype=torch.int32)
    t["i64.pairs"] = torch.tensor([[1, -(2**40)], [2**62, -3]], dtype=torch.int64)
    t["i8.grid"] = torch.tensor([[-128, -1, 0], [1, 2, 127], [5, -5, 9]], dtype=torch.int8)
    t["u8.column"] = torch.tensor([[0], [1], [128], [255]], dtype=torch.uint8)
    t["scalar"] = torch.tensor(2.75, dtype=torch.float32)
    t["empty"] = torch.zeros(0, 4, dtype=torch.float32)
    t["f64.unsupported"] = torch.tensor([1.5, -2.0], dtype=torch.float64)
    t["model.layers.0.self_attn.q_proj.weight"] = torch.randn(4, 6, generator=g).to(torch.bfloat16)
    return t


def raw_values(x):
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.reshape(-1).view(torch.int16).to(torch.int32).bitwise_and(0xFFFF).tolist()
    return x.reshape(-1).tolist()


def header_of(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return n, json.loads(f.read(n))


def make(out_dir):
    tensors = golden_tensors()
    metadata = {"format": "pt", "source": "awq.cpp golden", "unicode": "Jane Austen \u2014 Emma"}
    st_path = os.path.join(out_dir, "st_golden.safetensors")
    save_file(tensors, st_path, metadata=metadata)
    plain = {k: v for k, v in tensors.items() if v.dtype != torch.float64}
    save_file(plain, os.path.join(out_dir, "st_golden_plain.safetensors"), metadata={"format": "pt"})

    header_len, header = header_of(st_path)
    order = sorted((k for k in header if k != "__metadata__"),
                   key=lambda k: (header[k]["data_offsets"][0], header[k]["data_offsets"][1], k))
    expected = {"header_len": header_len, "metadata": metadata, "order": order, "tensors": {}}
    for name, x in tensors.items():
        entry = {
            "dtype": header[name]["dtype"],
            "shape": list(x.shape),
            "data_offsets": header[name]["data_offsets"],
            "values": raw_values(x),
        }
        if x.is_floating_point():
            entry["as_float"] = x.to(torch.float32).reshape(-1).tolist()
        expected["tensors"][name] = entry
    with open(os.path.join(out_dir, "st_golden.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {st_path} ({os.path.getsize(st_path)} bytes) and st_golden.json")


def make_tf5_config(out_dir):
    from transformers import LlamaConfig

    config = LlamaConfig.from_json_file(os.path.join(out_dir, "config_llama31_8b.json"))
    text = config.to_json_string()  # what save_pretrained writes
    with open(os.path.join(out_dir, "config_llama31_8b_tf5.json"), "w") as f:
        f.write(text)
    print("wrote config_llama31_8b_tf5.json")


def check_cpp(path):
    files = []
    if os.path.isdir(path):
        index = os.path.join(path, "model.safetensors.index.json")
        if os.path.exists(os.path.join(path, "model.safetensors")):
            files = [os.path.join(path, "model.safetensors")]
        else:
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
            files = [os.path.join(path, s) for s in sorted(set(weight_map.values()))]
    else:
        files = [path]
    for p in files:
        with safe_open(p, framework="pt") as f:
            print(p, "metadata:", f.metadata())
            for k in f.keys():
                x = f.get_tensor(k)
                print(f"  {k}: {x.dtype} {list(x.shape)} {x.reshape(-1)[:6].tolist()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data"))
    ap.add_argument("--check-cpp", help="read a file or folder written by the C++ writer")
    args = ap.parse_args()
    if args.check_cpp:
        check_cpp(args.check_cpp)
    else:
        make(args.out)
        make_tf5_config(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
