"""AutoAWQForCausalLM: AutoAWQ's from_pretrained / quantize / save_quantized / from_quantized /
generate over awq.cpp's library, on the CPU and without PyTorch."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _awqcpp
from ._arrays import as_id_array, is_torch, wrap_ids
from ._progress import Progress, ProgressArg
from .tokenizer import AwqTokenizer

AwqError = _awqcpp.AwqError
PathLike = Union[str, os.PathLike]

# AutoAWQ's own default; its data set cannot be downloaded here, so None and "pileval" both mean
# awq.cpp's default calibration text (Emma, what `awq quantize` uses without --calib-data).
_DEFAULT_CALIB = "pileval"


def resolve_calib_data(calib_data: Any, tokenizer: AwqTokenizer, max_samples: int,
                       max_seq_len: int, tmpdir: str) -> str:
    """A path the library reads for any of AutoAWQ's calib_data forms.

    A path is passed through. A list of token-id lists (or a 2-D numpy/torch array) is written as
    pre-tokenized JSONL, which the library takes as AutoAWQ takes such a list: in order, no BOS
    added, samples longer than max_seq_len skipped. A list of strings is tokenized as AutoAWQ's
    get_calib_dataset does (strip, encode with the model's special tokens, skip empty or too long
    samples, stop after max_samples) and written the same way, so the order is kept, unlike a text
    file's paragraphs, which are shuffled with seed 42.
    """
    if calib_data is None or (isinstance(calib_data, str) and calib_data == _DEFAULT_CALIB):
        return _awqcpp.default_text_path("emma")
    if isinstance(calib_data, (str, os.PathLike)):
        path = os.fspath(calib_data)
        if not os.path.exists(path):
            raise AwqError(
                f"calib_data {path!r}: no such file or folder; awq.cpp does not download Hugging "
                "Face data sets: pass a .txt/.jsonl file or a folder, a list of strings, or a list "
                "of token-id lists")
        return path
    if is_torch(calib_data):
        calib_data = calib_data.detach().cpu().numpy()
    samples: List[List[int]] = []
    if isinstance(calib_data, np.ndarray):
        if calib_data.ndim != 2:
            raise AwqError(f"calib_data: an array of token ids must be 2-D, got shape {calib_data.shape}")
        samples = [[int(t) for t in row] for row in calib_data]
    else:
        items = list(calib_data)
        if not items:
            raise AwqError("calib_data: the list is empty")
        if all(isinstance(s, str) for s in items):
            for text in items:
                ids = tokenizer.native.encode(text.strip(), True, False)
                if not ids or len(ids) > max_seq_len:
                    continue
                samples.append(ids)
                if len(samples) == max_samples:
                    break
        else:
            try:
                samples = [[int(t) for t in as_id_array(s)] for s in items]
            except (TypeError, ValueError) as e:
                raise AwqError("calib_data: expected a path, a list of strings or a list of "
                               f"token-id lists ({e})") from None
    path = os.path.join(tmpdir, "calib_data.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for s in samples:
            if s:
                f.write(json.dumps({"input_ids": s}) + "\n")
    return path


def quant_config_json(quant_config: Optional[Dict[str, Any]], **settings: Any) -> str:
    """AutoAWQ's quant_config plus the quantize() keywords as the library's JSON settings
    (docs/QUANT_CONFIG.md keys; unknown keys are an AwqError naming them)."""
    cfg = dict(quant_config or {})
    for k, v in settings.items():
        if v is not None:
            cfg[k] = v
    return json.dumps(cfg)


class AutoAWQForCausalLM:
    """A causal LM to quantize (from_pretrained) or a quantized one to run (from_quantized)."""

    def __init__(self, model_path: str, tokenizer: AwqTokenizer, quantized: bool,
                 model: Optional["_awqcpp.Model"] = None):
        self.model_path = model_path
        self.tokenizer = tokenizer
        self.is_quantized = quantized
        self._model = model
        self._run: Optional["_awqcpp.QuantizeRun"] = None
        self.quant_config: Dict[str, Any] = {}

    # Loading ------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, model_path: PathLike, *args, **kwargs) -> "AutoAWQForCausalLM":
        """A model to quantize: a .gguf file or a Hugging Face folder (config.json +
        safetensors). Its weights are read in fp32 when first needed. AutoAWQ's other arguments
        (torch_dtype, trust_remote_code, safetensors, device_map, ...) are accepted and ignored."""
        path = os.fspath(model_path)
        if not os.path.exists(path):
            raise AwqError(f"{path}: no such file or folder")
        return cls(path, AwqTokenizer(_awqcpp.Tokenizer.load(path), path), quantized=False)

    @classmethod
    def from_quantized(cls, quant_path: PathLike, *args, int8_lm_head: bool = False,
                       **kwargs) -> "AutoAWQForCausalLM":
        """A quantized checkpoint folder (AutoAWQ GEMM/GEMV or awqcpp_packed) loaded for inference:
        4-bit linears run on awq.cpp's int4 kernels. fuse_layers, max_seq_len, device_map and the
        like are accepted and ignored."""
        path = os.fspath(quant_path)
        model = _awqcpp.Model.load(path, int4=True, int8_lm_head=int8_lm_head)
        m = cls(path, AwqTokenizer(_awqcpp.Tokenizer.load(path), path), quantized=True, model=model)
        m.quant_config = _awqcpp.read_quant_config(path) or {}
        return m

    @property
    def model(self) -> "_awqcpp.Model":
        """The native model; from_pretrained's is loaded in fp32 on first use."""
        if self._model is None:
            self._model = _awqcpp.Model.load(self.model_path, int4=False)
        return self._model

    @property
    def config(self) -> Dict[str, Any]:
        """The model's config.json as a dict."""
        return json.loads(self.model.config_json)

    # Quantization -------------------------------------------------------------------------------
    def quantize(self, tokenizer: Any = None, quant_config: Optional[Dict[str, Any]] = None,
                 calib_data: Any = _DEFAULT_CALIB, split: str = "train", text_column: str = "text",
                 duo_scaling: bool = True, export_compatible: bool = False, apply_clip: bool = True,
                 n_parallel_calib_samples: Optional[int] = None, max_calib_samples: int = 128,
                 max_calib_seq_len: int = 512, max_chunk_memory: int = 1024 * 1024 * 128,
                 method: str = "awq", progress: ProgressArg = True, **kwargs) -> Dict[str, Any]:
        """AutoAWQ's quantize: AWQ (or method "rtn", "gptq", "awq+gptq") on the fp32 model, in
        place; save_quantized() then writes the checkpoint.

        tokenizer is ignored (awq.cpp tokenizes with the model's own). calib_data: a path (.txt,
        .jsonl, folder), a list of strings, a list of token-id lists, or the default (Emma; AutoAWQ's
        "pileval" cannot be downloaded here). max_chunk_memory bounds the activations held at once
        and n_parallel_calib_samples is ignored: neither changes the result. Extra settings of
        docs/QUANT_CONFIG.md (n_grid, max_shrink, n_sample_token, modules_to_not_convert, overrides)
        go in quant_config or as keywords. Returns the per-block report.
        """
        if export_compatible:
            raise AwqError("export_compatible=True (scales applied, weights left unquantized) is "
                           "not supported; quantize and save_quantized write the checkpoint")
        if self.is_quantized:
            raise AwqError(f"{self.model_path}: the model is already quantized (from_quantized)")
        if "quantizer_cls" in kwargs:
            raise AwqError("quantizer_cls is not supported: choose method='awq', 'rtn', 'gptq' "
                           "or 'awq+gptq'")
        cfg_json = quant_config_json(quant_config, duo_scaling=duo_scaling, apply_clip=apply_clip,
                                     max_calib_samples=max_calib_samples,
                                     max_calib_seq_len=max_calib_seq_len, **kwargs)
        # Validate before the (slow) fp32 load and calibration.
        self.quant_config = _awqcpp.config_from_json(cfg_json)
        with tempfile.TemporaryDirectory(prefix="awqcpp-calib-") as tmp:
            calib = "" if method == "rtn" else resolve_calib_data(
                calib_data, self.tokenizer, max_calib_samples, max_calib_seq_len, tmp)
            model = self.model
            try:
                with Progress(progress, "AWQ", "block") as bar:
                    self._run = model.quantize(self.tokenizer.native, cfg_json, method, calib,
                                               int(max_chunk_memory), bar)
            except BaseException:
                # The model may be half quantized: drop it, so that the next use reloads it.
                self._model, self._run = None, None
                raise
        self.is_quantized = True
        return self._run.report

    def save_quantized(self, save_dir: PathLike, safetensors: bool = True,
                       shard_size: Union[str, int] = "5GB") -> None:
        """Writes the AutoAWQ checkpoint folder (config.json with quantization_config, sharded
        model.safetensors, tokenizer files). The folder appears complete or not at all; an
        existing one is replaced."""
        if not safetensors:
            raise AwqError("safetensors=False: awq.cpp writes safetensors only")
        if self._run is None:
            raise AwqError("save_quantized: call quantize() first")
        shard = shard_size if isinstance(shard_size, int) else _awqcpp.parse_byte_size(shard_size)
        self.model.save_quantized(self._run, self.tokenizer.native, os.fspath(save_dir), shard,
                                  overwrite=True)

    # Inference ----------------------------------------------------------------------------------
    def generate(self, input_ids: Any = None, max_new_tokens: int = 128, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 50, top_p: float = 1.0, seed: int = 0,
                 eos_token_id: Optional[Union[int, Sequence[int]]] = None, streamer: Any = None,
                 **kwargs) -> Any:
        """transformers' generate for one sequence or a batch of equal-length rows: returns
        prompt + new ids as [batch, n] (torch when given torch, else numpy). Greedy unless
        do_sample (then temperature, top_k, top_p, seed). Stops at the tokenizer's end tokens
        (or eos_token_id), which are included. A str prompt returns the new text.
        A streamer with put()/end() (transformers' TextStreamer) receives the tokens as they come."""
        if input_ids is None:
            input_ids = kwargs.pop("inputs", None)
        if input_ids is None:
            raise AwqError("generate: pass input_ids")
        if isinstance(input_ids, str):
            ids = self.tokenizer.native.encode(input_ids, True, False)
            new = self._generate_row(np.asarray(ids, np.int32), max_new_tokens, do_sample,
                                     temperature, top_k, top_p, seed, eos_token_id, streamer)
            return self.tokenizer.native.decode(new, True)
        torch_in = is_torch(input_ids)
        a = np.asarray(input_ids.detach().cpu().numpy() if torch_in else input_ids)
        rows = a[None, :] if a.ndim == 1 else a
        outs = []
        for row in rows:
            new = self._generate_row(as_id_array(row), max_new_tokens, do_sample, temperature,
                                     top_k, top_p, seed, eos_token_id, streamer)
            outs.append([int(t) for t in row] + new)
        if len({len(o) for o in outs}) > 1:
            # Rows that stopped early are padded with the first stop token, as transformers pads.
            pad = self._stop_ids(eos_token_id)[0] if self._stop_ids(eos_token_id) else 0
            n = max(len(o) for o in outs)
            outs = [o + [pad] * (n - len(o)) for o in outs]
        return wrap_ids(outs, "pt" if torch_in else "np")

    def _stop_ids(self, eos_token_id: Any) -> List[int]:
        if eos_token_id is None:
            return list(self.tokenizer.native.eos_ids)
        return [int(eos_token_id)] if np.isscalar(eos_token_id) else [int(t) for t in eos_token_id]

    def _generate_row(self, ids: np.ndarray, max_new_tokens: int, do_sample: bool,
                      temperature: float, top_k: int, top_p: float, seed: int, eos_token_id: Any,
                      streamer: Any) -> List[int]:
        on_token = None
        if streamer is not None:
            streamer.put(ids[None, :])

            def on_token(token: int, count: int) -> None:
                streamer.put(np.asarray([token]))

        try:
            return list(self.model.generate(
                ids, int(max_new_tokens), float(temperature) if do_sample else 0.0,
                int(top_k or 0) if do_sample else 0, float(top_p) if do_sample else 1.0, int(seed),
                self._stop_ids(eos_token_id), 0, on_token))
        finally:
            if streamer is not None:
                streamer.end()

    def logits(self, input_ids: Any) -> np.ndarray:
        """Logits [n, vocab] (float32) of every position of one sequence from a fresh context."""
        return self.model.logits(as_id_array(input_ids))

    def __call__(self, input_ids: Any) -> np.ndarray:
        return self.logits(input_ids)

    def perplexity(self, text: Any = None, **kwargs) -> Dict[str, Any]:
        """awqcpp.perplexity(self, text, ...)."""
        from .evaluate import perplexity

        return perplexity(self, text, **kwargs)

    def __repr__(self) -> str:
        state = "quantized" if self.is_quantized else "full precision"
        return f"AutoAWQForCausalLM({self.model_path!r}, {state})"


def quantize_to_folder(model_path: PathLike, quant_path: PathLike,
                       quant_config: Optional[Dict[str, Any]] = None, calib_data: Any = _DEFAULT_CALIB,
                       method: str = "awq", shard_size: Union[str, int] = "5GB",
                       overwrite: bool = False, max_chunk_memory: int = 256 * 1024 * 1024,
                       keep_partial: bool = False, progress: ProgressArg = True,
                       **settings: Any) -> Dict[str, Any]:
    """`awq quantize MODEL OUT`: the streaming quantization (one block's weights in memory),
    for models whose fp32 weights do not fit. Writes the same bytes as quantize() +
    save_quantized(). Blocks are staged in OUT.partial; a KeyboardInterrupt removes it unless
    keep_partial (then the same call resumes after the last staged block)."""
    path, out = os.fspath(model_path), os.fspath(quant_path)
    tok = AwqTokenizer(_awqcpp.Tokenizer.load(path), path)
    cfg = dict(quant_config or {})
    cfg_json = quant_config_json(cfg, **settings)
    parsed = _awqcpp.config_from_json(cfg_json)
    shard = shard_size if isinstance(shard_size, int) else _awqcpp.parse_byte_size(shard_size)
    with tempfile.TemporaryDirectory(prefix="awqcpp-calib-") as tmp:
        calib = "" if method == "rtn" else resolve_calib_data(
            calib_data, tok, parsed["max_calib_samples"], parsed["max_calib_seq_len"], tmp)
        try:
            with Progress(progress, "AWQ", "block") as bar:
                return _awqcpp.quantize_to_folder(path, tok.native, out, cfg_json, method, calib,
                                                  shard, overwrite, int(max_chunk_memory), bar)
        except KeyboardInterrupt:
            if not keep_partial:
                shutil.rmtree(out.rstrip("/") + ".partial", ignore_errors=True)
            raise
