"""What AutoAWQ lacks, as `awq eval`, `validate` and `inspect` compute it: perplexity, a reference
against a quantized model's outputs, threshold checks, and what a checkpoint holds. Every result is
plain Python data (dicts, lists, numbers)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Union

from . import _awqcpp
from ._arrays import as_id_array
from ._progress import Progress, ProgressArg
from .model import AutoAWQForCausalLM

AwqError = _awqcpp.AwqError
ModelArg = Union[str, os.PathLike, AutoAWQForCausalLM]

# `awq validate`'s thresholds: SmolLM2-135M at 4 bits passes all of them on Pride and Prejudice,
# at 3 bits it fails correlation and the perplexity ratio (docs/METRICS.md).
VALIDATE_DEFAULTS = {"max_mse": None, "max_relative_error": 0.6, "min_correlation": 0.95,
                     "max_kl": 0.5, "min_top1": 0.65, "max_ppl_ratio": 1.3}


def _native(model: ModelArg, int4: bool = True) -> "_awqcpp.Model":
    if isinstance(model, AutoAWQForCausalLM):
        return model.model
    return _awqcpp.Model.load(os.fspath(model), int4=int4)


def _tokenizer(model: ModelArg) -> "_awqcpp.Tokenizer":
    if isinstance(model, AutoAWQForCausalLM):
        return model.tokenizer.native
    return _awqcpp.Tokenizer.load(os.fspath(model))


def _read_text(text: Any, default: str) -> str:
    """A path's contents, or the text itself; None is assets/text/<default>.txt."""
    if text is None:
        text = _awqcpp.default_text_path(default)
    if isinstance(text, os.PathLike) or (isinstance(text, str) and "\n" not in text
                                         and os.path.isfile(text)):
        with open(os.fspath(text), encoding="utf-8", errors="replace", newline="") as f:
            return f.read()
    if isinstance(text, str) and "\n" not in text and text.endswith((".txt", ".md", ".jsonl")):
        raise AwqError(f"{text}: no such file")
    return text


def _ids(tok: "_awqcpp.Tokenizer", text: Any, default: str, max_tokens: int = -1,
         strip_newline: bool = False):
    """Token ids of a path, a text or ids; plain text gets the model's BOS rule, and only a
    prefix big enough for max_tokens is tokenized (as `awq validate` does)."""
    if text is not None and not isinstance(text, (str, os.PathLike)):
        return as_id_array(text)
    s = _read_text(text, default)
    if strip_newline and s.endswith("\n"):
        s = s[:-1]
    if max_tokens > 0 and len(s) > 8 * max_tokens:
        # 8 bytes a token is far more than English needs; cut at a line break.
        cut = s.rfind("\n", 0, 8 * max_tokens)
        cut = cut if cut > 0 else 8 * max_tokens
        ids = tok.encode(s[:cut], True, False)
        if len(ids) >= max_tokens:
            return as_id_array(ids)
    return as_id_array(tok.encode(s, True, False))


def perplexity(model: ModelArg, text: Any = None, ctx: int = 2048, max_tokens: int = -1,
               protocol: str = "awq", progress: ProgressArg = True) -> Dict[str, Any]:
    """`awq eval`: perplexity of a model (path or AutoAWQForCausalLM) on a text file, a string or
    token ids (default: Pride and Prejudice). protocol "awq" scores every position of
    non-overlapping ctx windows; "llama.cpp" as llama-perplexity does (docs/LLAMACPP_REFERENCE.md)."""
    m, tok = _native(model), _tokenizer(model)
    llama = protocol == "llama.cpp"
    ids = _ids(tok, text, "prideprejudice", strip_newline=llama)
    bos = tok.bos_id if (llama and tok.add_bos) else -1
    with Progress(progress, "perplexity", "tok") as bar:
        r = m.perplexity(ids, ctx, max_tokens, protocol, bos, bar)
    r.update({"protocol": protocol, "ctx": ctx, "text_tokens": int(ids.shape[0])})
    return r


def compare(reference: ModelArg, quantized: ModelArg, text: Any = None, ctx: int = 512,
            max_tokens: int = 4096, progress: ProgressArg = True) -> Dict[str, Any]:
    """A reference and a quantized model over the same windows of a text (default: Pride and
    Prejudice): both perplexities, mean and max KL(p_ref || p_q), top-1 agreement and logit error
    metrics (docs/METRICS.md)."""
    ref, q, tok = _native(reference), _native(quantized), _tokenizer(reference)
    ids = _ids(tok, text, "prideprejudice", max_tokens)
    with Progress(progress, "compare", "tok") as bar:
        return _awqcpp.compare_outputs(ref, q, ids, ctx, max_tokens, bar)


def validate(reference: ModelArg, quantized: ModelArg, text: Any = None, ctx: int = 512,
             max_tokens: int = 4096, progress: ProgressArg = True,
             **thresholds: Optional[float]) -> Dict[str, Any]:
    """`awq validate`: compare() and then the thresholds (max_mse, max_relative_error,
    min_correlation, max_kl, min_top1, max_ppl_ratio; None turns one off; defaults as the CLI's).
    Returns the comparison with "passed", "checks" and "reasons" (one sentence per failure)."""
    unknown = set(thresholds) - set(VALIDATE_DEFAULTS)
    if unknown:
        raise AwqError(f"validate: unknown thresholds {sorted(unknown)} (expected "
                       f"{', '.join(VALIDATE_DEFAULTS)})")
    th = dict(VALIDATE_DEFAULTS, **thresholds)
    if ctx < 2:
        raise AwqError(f"--ctx must be at least 2, got {ctx}")
    c = compare(reference, quantized, text, ctx, max_tokens, progress)
    c.update(_awqcpp.validate_outputs(c, **th))
    return c


def inspect(checkpoint: Union[str, os.PathLike], reference: Optional[ModelArg] = None,
            calib_data: Optional[Union[str, os.PathLike]] = None, max_calib_samples: int = 32,
            threshold: float = 5.0) -> Dict[str, Any]:
    """`awq inspect`: a checkpoint folder's or GGUF file's tensors and sizes, its quantization
    settings, the salience of its saved activation statistics (activation_stats.safetensors), and
    with a reference model every decoder linear compared against it on calibration text (default
    Emma), invariant to AWQ's scale folding (docs/METRICS.md)."""
    path = os.fspath(checkpoint)
    if not os.path.exists(path):
        raise AwqError(f"{path}: no such file or folder")
    out: Dict[str, Any] = {"sizes": _awqcpp.measure_checkpoint(path),
                           "quant_config": _awqcpp.read_quant_config(path)
                           if os.path.isdir(path) else None}
    stats = os.path.join(path, "activation_stats.safetensors")
    out["salience"] = _awqcpp.salience(stats, threshold) if os.path.isfile(stats) else None
    if reference is not None:
        calib = os.fspath(calib_data) if calib_data else _awqcpp.default_text_path("emma")
        ref = _native(reference, int4=False)
        q = _awqcpp.Model.load(path, int4=False)
        out["linears"] = _awqcpp.compare_linears(ref, q, _tokenizer(reference), calib,
                                                 max_calib_samples)
    return out
