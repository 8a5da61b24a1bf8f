"""awqcpp: AutoAWQ's Python API over awq.cpp's C++ library (docs/PYTHON.md).

    from awqcpp import AutoAWQForCausalLM, AutoTokenizer
    model = AutoAWQForCausalLM.from_pretrained("SmolLM2-135M-Instruct.Q4_1.gguf")
    model.quantize(quant_config={"zero_point": True, "q_group_size": 128, "w_bit": 4,
                                 "version": "GEMM"})
    model.save_quantized("smollm2-awq")
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import json

import numpy as np

from . import _awqcpp
from ._awqcpp import AwqError, Model, Tokenizer
from .evaluate import compare, inspect, perplexity, validate
from .model import AutoAWQForCausalLM, quantize_to_folder
from .tokenizer import AutoTokenizer, AwqTokenizer

__version__ = "0.1.0"


def quantize_tensor(w: Any, quant_config: Optional[Dict[str, Any]] = None, x: Any = None) -> Dict[str, Any]:
    """The library's tensor quantizer (docs/LIBRARY.md) on numpy: w [out, in] float32, round to
    nearest group-wise, or with x [n_tokens, in] (the linear's input activations) AWQ's scale and
    clip search. Returns codes [out, in] uint8, scales and zeros [out, n_groups], the dequantized
    weights in W's basis and error metrics (plus input_scales and losses with x)."""
    wa = np.ascontiguousarray(np.asarray(w, dtype=np.float32))
    xa = None if x is None else np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    return _awqcpp.quantize_tensor(wa, json.dumps(quant_config or {}), xa)


__all__ = [
    "AutoAWQForCausalLM", "AutoTokenizer", "AwqTokenizer", "AwqError", "Model", "Tokenizer",
    "compare", "inspect", "perplexity", "quantize_tensor", "quantize_to_folder", "validate",
]
