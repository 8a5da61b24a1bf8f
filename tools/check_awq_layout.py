#!/usr/bin/env python3
"""Checks that an AWQ GEMM checkpoint written by awq.cpp unpacks, with AutoAWQ's own code, to
the weights awq.cpp dequantizes.

Usage:
  AWQ_LAYOUT_CHECK_DIR=/tmp/awqcheck build/tests/awq_checkpoint_test \
      --gtest_filter=AwqCheckpointTest.GemmRoundTripSharded
  python3 tools/check_awq_layout.py /tmp/awqcheck [--autoawq-src DIR]

The test writes /tmp/awqcheck/ckpt (a sharded GEMM checkpoint) and
/tmp/awqcheck/reference.safetensors (awq.cpp's DequantizeLinear of every quantized linear, F32
[out, in]). This script loads every <module>.qweight/.qzeros/.scales from ckpt and dequantizes
it with AutoAWQ's awq/utils/packing_utils.py dequantize_gemm (unpack_awq + reverse_awq_order +
(q - z) * s) when AutoAWQ's source is available (pip download autoawq --no-deps, unpack, pass
--autoawq-src), or with a line-by-line numpy transcription of those functions otherwise. The
result ([in, out]) must equal the reference transposed, bit for bit, with scales in fp32; the
fp16 product AutoAWQ's kernels would form is reported alongside.
"""
import argparse
import importlib.util
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]


def numpy_dequantize_gemm(qweight, qzeros, scales, bits, group_size):
    """AutoAWQ's dequantize_gemm (packing_utils.py, v0.2.9) transcribed to numpy."""
    shifts = np.arange(0, 32, bits, dtype=np.int32)
    # unpack_awq: arithmetic right shift, then .to(int8) keeps the low byte
    iweights = (qweight[:, :, None] >> shifts[None, None, :]).astype(np.int8)
    iweights = iweights.reshape(iweights.shape[0], -1)
    izeros = (qzeros[:, :, None] >> shifts[None, None, :]).astype(np.int8)
    izeros = izeros.reshape(izeros.shape[0], -1)
    # reverse_awq_order
    order = np.arange(iweights.shape[-1], dtype=np.int32).reshape(-1, 32 // bits)
    order = order[:, AWQ_REVERSE_ORDER].reshape(-1)
    iweights = iweights[:, order]
    izeros = izeros[:, order]
    # overflow checks
    iweights = iweights & ((1 << bits) - 1)
    izeros = izeros & ((1 << bits) - 1)
    scales = np.repeat(scales, group_size, axis=0)
    izeros = np.repeat(izeros, group_size, axis=0)
    return (iweights - izeros).astype(scales.dtype) * scales


def load_autoawq(src):
    """Imports awq/utils/packing_utils.py alone (the package __init__ needs CUDA extensions)."""
    path = os.path.join(src, "awq", "utils", "packing_utils.py")
    spec = importlib.util.spec_from_file_location("awq_packing_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", help="folder with ckpt/ and reference.safetensors")
    parser.add_argument("--autoawq-src", help="unpacked AutoAWQ source (has awq/utils/)")
    args = parser.parse_args()

    ckpt = os.path.join(args.dir, "ckpt")
    with open(os.path.join(ckpt, "config.json")) as f:
        quant = json.load(f)["quantization_config"]
    assert quant["quant_method"] == "awq" and quant["version"] == "gemm", quant
    bits, group = quant["bits"], quant["group_size"]

    tensors = {}
    for name in sorted(os.listdir(ckpt)):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(ckpt, name)))
    reference = load_file(os.path.join(args.dir, "reference.safetensors"))

    packing = load_autoawq(args.autoawq_src) if args.autoawq_src else None
    if packing is not None:
        import torch
    print(f"bits {bits}, group_size {group}, unpacking with "
          f"{'AutoAWQ ' + args.autoawq_src if packing else 'the numpy transcription'}")
    failures = 0
    modules = sorted(k[: -len(".qweight")] for k in tensors if k.endswith(".qweight"))
    for module in modules:
        qweight = tensors[module + ".qweight"]
        qzeros = tensors[module + ".qzeros"]
        scales = tensors[module + ".scales"]
        in_features = qweight.shape[0]
        g = in_features if group == -1 else group
        if packing is not None:
            theirs = packing.dequantize_gemm(torch.from_numpy(qweight), torch.from_numpy(qzeros),
                                             torch.from_numpy(scales).float(), bits, g).numpy()
            theirs16 = packing.dequantize_gemm(torch.from_numpy(qweight),
                                               torch.from_numpy(qzeros),
                                               torch.from_numpy(scales), bits, g).float().numpy()
        else:
            theirs = numpy_dequantize_gemm(qweight, qzeros, scales.astype(np.float32), bits, g)
            theirs16 = numpy_dequantize_gemm(qweight, qzeros, scales, bits, g).astype(np.float32)
        ours = reference[module + ".weight"].T  # [out, in] -> [in, out]
        exact = theirs.shape == ours.shape and np.array_equal(theirs, ours)
        fp16_err = float(np.max(np.abs(theirs16 - ours))) if theirs16.shape == ours.shape else -1
        print(f"  {module}: qweight {list(qweight.shape)} -> [in, out] {list(theirs.shape)}: "
              f"{'identical' if exact else 'DIFFERENT'} (fp16 product max |diff| {fp16_err:.3g})")
        failures += not exact
    if not modules:
        print("no quantized linears found")
        return 1
    print(f"{len(modules) - failures}/{len(modules)} linears identical")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
