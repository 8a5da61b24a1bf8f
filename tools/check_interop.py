#!/usr/bin/env python3
"""Checks that the Python ecosystem reads an awq.cpp checkpoint folder and computes what awq.cpp
computes from it.

Usage:
  python3 tools/check_interop.py DIR [--awq build/awq] [--text assets/text/prideprejudice.txt]
      [--autoawq-src DIR] [--tol 1e-4] [--json OUT.json] [--quick] [--ppl-config N:CTX ...]
      [--new-tokens 24] [--per-token] [--gen-kernel fp32] [--threads 1] [--skip-native]

DIR is an AutoAWQ-GEMM folder written by `awq quantize`, of any family awq.cpp writes (llama,
qwen2, qwen3, mistral, phi3 with fused qkv_proj / gate_up_proj, gemma3_text). Steps
(docs/INTEROP.md):

 1. transformers: AutoConfig.from_pretrained(DIR) must parse config.json (when it raises, the
    error is a FAIL row, and the rest of the check goes on with a config built from the same
    JSON with integral floats turned into ints where the config class demands an int); the
    quantization_config must become an AwqConfig (bits, group size, GEMM format as in the file);
    then AutoModelForCausalLM.from_pretrained(DIR, device_map="cpu") is tried and whatever it
    raises is recorded verbatim (transformers 5 needs gptqmodel for AWQ). When it does load, its
    perplexities are reported too.
 2. Reference model: AutoModelForCausalLM.from_config(config without quantization_config, fp32,
    eager attention), so the family's own transformers class (Gemma3ForCausalLM applies its norms
    as 1 + w, as awq.cpp does). Every Linear that has qweight/qzeros/scales in DIR gets AutoAWQ's
    dequantize_gemm(qweight, qzeros, scales) (from awq/utils/packing_utils.py of an installed
    autoawq, or of --autoawq-src, loaded as a file so the package __init__ and its CUDA/`datasets`
    imports are not needed; a faithful transcription otherwise, and the output says which),
    transposed to [out, in]; scales in fp32, as awq.cpp dequantizes. Every other tensor is loaded
    as stored (F16 -> fp32); tied embeddings stay tied; tokenizer = AutoTokenizer(DIR).
 3. With it, in fp32 on the CPU: greedy continuations and the NLL of 4 short prompts, and the
    perplexity of TEXT for each --ppl-config (default 2048 tokens ctx 512 and 4096 tokens ctx
    2048): the text is tokenized once with the model's special-token rule (one BOS before the
    whole text where the tokenizer adds one), non-overlapping windows are cut from that stream,
    each evaluated from an empty context, NLL of tokens 1..ctx-1, ppl = exp(sum / count). This is
    what `awq eval` does.
 4. The same through `awq eval` / `awq generate`; perplexities and prompt NLL sums must agree
    within --tol relative, token counts exactly, greedy texts exactly. `awq generate` runs with
    fp32 activations (AWQ_INT4_KERNEL, see --gen-kernel) so that it computes what awq eval and the
    reference compute. Exit status 1 on any FAIL.
"""
import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
import traceback

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = [
    "The capital of France is",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
]
GREEDY_NEW_TOKENS = 24
PPL_CONFIGS = [(2048, 512), (4096, 2048)]  # (max tokens, ctx)
# awq.cpp's Tokenizer also stops generation at these special added tokens (src/tokenizer).
END_TOKENS = ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>", "<|end_of_text|>",
              "<|end|>", "<end_of_turn>", "</s>"]


def log(msg):
    print(msg, flush=True)


# --- AutoAWQ's unpacking --------------------------------------------------------------------------

AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]


class TranscribedPackingUtils:
    """AutoAWQ 0.2.9 awq/utils/packing_utils.py, unpack_awq / reverse_awq_order / dequantize_gemm,
    transcribed statement by statement (used only when the package cannot be found)."""

    @staticmethod
    def unpack_awq(qweight, qzeros, bits):
        shifts = torch.arange(0, 32, bits, device=qzeros.device)
        iweights = torch.bitwise_right_shift(qweight[:, :, None],
                                             shifts[None, None, :]).to(torch.int8)
        iweights = iweights.view(iweights.shape[0], -1)
        izeros = torch.bitwise_right_shift(qzeros[:, :, None], shifts[None, None, :]).to(torch.int8)
        izeros = izeros.view(izeros.shape[0], -1)
        return iweights, izeros

    @staticmethod
    def reverse_awq_order(iweights, izeros, bits):
        order = torch.arange(iweights.shape[-1], dtype=torch.int32, device=izeros.device)
        order = order.view(-1, 32 // bits)[:, AWQ_REVERSE_ORDER].view(-1)
        return iweights[:, order], izeros[:, order]

    @classmethod
    def dequantize_gemm(cls, qweight, qzeros, scales, bits, group_size):
        iweight, izeros = cls.unpack_awq(qweight, qzeros, bits)
        iweight, izeros = cls.reverse_awq_order(iweight, izeros, bits)
        iweight = torch.bitwise_and(iweight, (2 ** bits) - 1)
        izeros = torch.bitwise_and(izeros, (2 ** bits) - 1)
        scales = scales.repeat_interleave(group_size, dim=0)
        izeros = izeros.repeat_interleave(group_size, dim=0)
        return (iweight - izeros) * scales


def find_packing_utils(autoawq_src):
    """Returns (module, description). Loads packing_utils.py as a file: importing the `awq`
    package runs its __init__, which imports the whole quantizer (and `datasets`)."""
    candidates = []
    if autoawq_src:
        candidates.append(os.path.join(autoawq_src, "awq", "utils", "packing_utils.py"))
    try:
        spec = importlib.util.find_spec("awq")  # does not execute awq/__init__.py
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(os.path.join(loc, "utils", "packing_utils.py"))
    for path in candidates:
        if os.path.isfile(path):
            mspec = importlib.util.spec_from_file_location("autoawq_packing_utils", path)
            module = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(module)
            version = "?"
            init = os.path.join(os.path.dirname(os.path.dirname(path)), "__init__.py")
            if os.path.isfile(init):
                for line in open(init, encoding="utf-8"):
                    if line.startswith("__version__"):
                        version = line.split("=")[1].strip().strip("\"'")
            return module, f"AutoAWQ {version} {path}"
    return TranscribedPackingUtils, "transcription of AutoAWQ 0.2.9 packing_utils (not found)"


def autoawq_import_status(autoawq_src):
    """What `import awq` does (in a subprocess: it may print warnings or half-import)."""
    env = dict(os.environ)
    if autoawq_src:
        env["PYTHONPATH"] = autoawq_src + os.pathsep + env.get("PYTHONPATH", "")
    code = ("import warnings; warnings.simplefilter('ignore')\n"
            "import awq, awq.quantize.quantizer\nprint('ok', awq.__version__)")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=600)
    if r.returncode == 0:
        return r.stdout.strip().splitlines()[-1]
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    return "fails: " + (lines[-1] if lines else f"exit {r.returncode}")


# --- loading --------------------------------------------------------------------------------------

def load_tensors(folder):
    from safetensors.torch import load_file
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for name in files:
        tensors.update(load_file(os.path.join(folder, name)))
    return tensors


def load_config(folder):
    """Step 1a. Returns (config, report). AutoConfig.from_pretrained(DIR) first; when it raises,
    the same JSON goes through the config class again with each field it rejects for being a
    float where an int is declared turned into that int (only integral values), so the rest of
    the check can still run; the report keeps the original error."""
    import re
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    rep = {}
    try:
        config = AutoConfig.from_pretrained(folder)
        rep["autoconfig"] = f"parsed as {type(config).__name__}"
        rep["autoconfig_ok"] = True
        return config, rep
    except Exception as e:  # noqa: BLE001 - recording what transformers raises is the point
        rep["autoconfig"] = f"{type(e).__name__}: {' '.join(str(e).split())}"
        rep["autoconfig_ok"] = False
    with open(os.path.join(folder, "config.json")) as f:
        raw = json.load(f)
    cls = CONFIG_MAPPING[raw["model_type"]]
    coerced = []
    for _ in range(64):
        try:
            config = cls.from_dict(dict(raw))
            break
        except Exception as e:  # noqa: BLE001
            m = re.search(r"field '([^']+)'.*expected int, got float", " ".join(str(e).split()))
            if not m or not float(raw.get(m.group(1), 0.5)).is_integer():
                raise
            raw[m.group(1)] = int(raw[m.group(1)])
            coerced.append(m.group(1))
    rep["config_workaround"] = (f"{cls.__name__}.from_dict with {', '.join(coerced)} as int"
                                if coerced else f"{cls.__name__}.from_dict")
    return config, rep


def quant_config_report(config):
    """Step 1b: the quantization_config as transformers' AutoQuantizationConfig reads it."""
    from transformers.quantizers.auto import AutoQuantizationConfig
    rep = {}
    qc_raw = config.quantization_config
    qc_dict = qc_raw if isinstance(qc_raw, dict) else qc_raw.to_dict()
    qc = AutoQuantizationConfig.from_dict(dict(qc_dict))
    rep["config_class"] = type(qc).__name__
    rep["config"] = {"bits": qc.bits, "group_size": qc.group_size,
                     "zero_point": getattr(qc, "zero_point", None),
                     "format": str(getattr(qc, "format", getattr(qc, "version", None))),
                     "quant_method": str(qc.quant_method)}
    fmt = rep["config"]["format"].lower()
    rep["config_ok"] = (type(qc).__name__ == "AwqConfig" and qc.bits == qc_dict["bits"]
                        and qc.group_size == qc_dict["group_size"] and fmt.endswith("gemm"))
    return rep


def try_native_load(folder, dtype):
    """Step 1c. Returns (report dict, model or None)."""
    import transformers
    from transformers import AutoModelForCausalLM
    rep = {}
    t0 = time.time()
    try:
        kw = {} if dtype == "auto" else {"dtype": getattr(torch, dtype)}
        model = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu", **kw)
        model.eval()
        lin = model.get_submodule(next(n for n, _ in model.named_modules()
                                       if n.endswith("_proj")))
        rep["native_load"] = (f"loaded as {type(model).__name__} ({model.dtype}, linears "
                              f"{type(lin).__name__}) in {time.time() - t0:.1f}s")
        try:
            import gptqmodel
            rep["gptqmodel"] = f"{getattr(gptqmodel, '__version__', '?')} {gptqmodel.__file__}"
        except ImportError:
            pass
        rep["native_loaded"] = True
        return rep, model
    except Exception as e:  # noqa: BLE001 - recording whatever transformers raises is the point
        rep["native_load"] = f"{type(e).__name__}: {' '.join(str(e).split())}"
        rep["native_loaded"] = False
        rep["native_traceback_tail"] = traceback.format_exc().strip().splitlines()[-4:]
        rep["transformers"] = transformers.__version__
        return rep, None


def fuse_experts(state, quantized, model):
    """Mixtures of experts: transformers 5 holds each layer's experts fused in memory
    (mlp.experts.gate_up_proj [E, 2 I, D]: each expert's gate rows then its up rows;
    mlp.experts.down_proj [E, D, I]) and Mixtral's block_sparse_moe under mlp, while checkpoints
    (and awq.cpp's) name every expert's linears. The per-expert tensors are stacked into the
    model's parameters."""
    import re
    pat = re.compile(r"^(model\.layers\.\d+)\.(?:block_sparse_moe|mlp)\.experts\.(\d+)\."
                     r"(w1|w3|w2|gate_proj|up_proj|down_proj)\.weight$")
    params = dict(model.named_parameters())
    experts = {}
    out = {}
    for name, t in state.items():
        m = pat.match(name)
        if m is None:
            out[name.replace(".block_sparse_moe.", ".mlp.")
                if name.replace(".block_sparse_moe.", ".mlp.") in params else name] = t
            continue
        layer, e, part = m.group(1), int(m.group(2)), m.group(3)
        kind = {"w1": "gate", "gate_proj": "gate", "w3": "up", "up_proj": "up"}.get(part, "down")
        experts.setdefault(layer, {}).setdefault(e, {})[kind] = t
    if not experts:
        return state, quantized
    for layer, by_expert in experts.items():
        n = len(by_expert)
        gate_up = torch.stack([torch.cat([by_expert[e]["gate"], by_expert[e]["up"]], 0)
                               for e in range(n)])
        down = torch.stack([by_expert[e]["down"] for e in range(n)])
        for key, t in ((layer + ".mlp.experts.gate_up_proj", gate_up),
                       (layer + ".mlp.experts.down_proj", down)):
            if key not in params or tuple(params[key].shape) != tuple(t.shape):
                raise SystemExit(f"{key}: stacked experts {tuple(t.shape)}, model has "
                                 f"{tuple(params[key].shape) if key in params else 'none'}")
            out[key] = t
    kept = {q for q in quantized if pat.match(q + ".weight") is None}
    return out, kept


def build_reference(folder, config, packing):
    """Step 2: the family's fp32 transformers model with AutoAWQ-dequantized linears."""
    import copy
    from transformers import AutoModelForCausalLM
    config = copy.deepcopy(config)
    qc = config.quantization_config
    qc = qc if isinstance(qc, dict) else qc.to_dict()
    bits, group = qc["bits"], qc["group_size"]
    assert qc.get("version", qc.get("format", "gemm")).lower() == "gemm", qc
    del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                             attn_implementation="eager")
    tensors = load_tensors(folder)
    state, n_quant, quantized = {}, 0, set()
    for name, t in tensors.items():
        if name.endswith((".qzeros", ".scales")):
            continue
        if name.endswith(".qweight"):
            module = name[: -len(".qweight")]
            in_features = t.shape[0]
            g = in_features if group == -1 else group
            w = packing.dequantize_gemm(t, tensors[module + ".qzeros"],
                                        tensors[module + ".scales"].float(), bits, g)
            state[module + ".weight"] = w.t().contiguous().float()
            quantized.add(module)
            n_quant += 1
        else:
            state[name] = t.float()
    state, quantized = fuse_experts(state, quantized, model)
    # Every Linear named by a qweight must exist in the transformers model with that shape.
    for module in sorted(quantized):
        lin = model.get_submodule(module)
        if not isinstance(lin, torch.nn.Linear):
            raise SystemExit(f"{module}: qweight in the folder, {type(lin).__name__} in "
                             f"{type(model).__name__}")
        if tuple(lin.weight.shape) != tuple(state[module + ".weight"].shape):
            raise SystemExit(f"{module}: dequantized {tuple(state[module + '.weight'].shape)} vs "
                             f"{tuple(lin.weight.shape)} in {type(model).__name__}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
    out_name = next((n + ".weight" for n, m in model.named_modules() if m is out_emb), None)
    allowed_missing = {out_name} if tied else set()
    bad_missing = [k for k in missing if k not in allowed_missing]
    if bad_missing or unexpected:
        raise SystemExit(f"state dict mismatch: missing {bad_missing}, unexpected {unexpected}")
    if tied:
        model.tie_weights()
        assert out_emb.weight.data_ptr() == in_emb.weight.data_ptr(), "lm head not tied"
    model.eval()
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    dtypes = sorted({str(t.dtype).replace("torch.", "") for n, t in tensors.items()
                     if not n.endswith((".qweight", ".qzeros", ".scales"))})
    info = {"model_class": type(model).__name__, "model_type": config.model_type,
            "bits": bits, "group_size": group, "quantized_linears": n_quant,
            "linears_not_quantized": [n for n in linears if n not in quantized],
            "plain_tensors": len(state) - n_quant, "plain_dtypes": dtypes, "tied": tied}
    return model, info


# --- computing ------------------------------------------------------------------------------------

LOGIT_ROWS = 256  # rows of logits at once: 256 x 262144 fp32 is 256 MiB (Gemma 3's vocabulary)


@torch.no_grad()
def hidden_of(model, ids):
    """Final hidden states [len, d] of one sequence from an empty context (no cache)."""
    out = model.model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.last_hidden_state[0]


@torch.no_grad()
def head(model, h):
    """The *ForCausalLM head on hidden rows h: lm_head, then final logit soft-capping where the
    config has it (Gemma 2/3), as their forward does."""
    logits = model.lm_head(h).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


@torch.no_grad()
def check_head(model, ids):
    """hidden_of + head must give the model's own forward logits (guards the chunked path)."""
    full = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False).logits[0]
    mine = head(model, hidden_of(model, ids))
    return float((full.float() - mine).abs().max())


def nll_of(model, ids):
    """float64 NLL of tokens 1..len-1 given their prefix (empty context)."""
    h = hidden_of(model, ids)
    out = []
    for r0 in range(0, len(ids) - 1, LOGIT_ROWS):
        r1 = min(r0 + LOGIT_ROWS, len(ids) - 1)
        lg = head(model, h[r0:r1]).double()
        tgt = torch.tensor(ids[r0 + 1:r1 + 1], dtype=torch.long)
        out.append((torch.logsumexp(lg, dim=-1) - lg.gather(1, tgt[:, None])[:, 0]).numpy())
    return np.concatenate(out)


def perplexity(model, ids, n_tokens, ctx):
    """awq eval's protocol (src/eval/perplexity.cc): the first n_tokens of the stream, cut into
    non-overlapping windows of ctx, each from an empty context."""
    ids = ids[:n_tokens]
    nlls = [nll_of(model, ids[s:s + ctx]) for s in range(0, len(ids) - ctx + 1, ctx)]
    allnll = np.concatenate(nlls)
    total = float(allnll.sum())
    return {"n_tokens": len(nlls) * ctx, "n_windows": len(nlls), "n_predicted": len(allnll),
            "nll_sum": total, "perplexity": math.exp(total / len(allnll))}


@torch.no_grad()
def greedy(model, ids, n_new, eos_ids, max_positions):
    """Greedy decoding with a full recompute per step. Like awq generate, it stops at an EOS id
    (which is not printed) or when the sequence reaches max_positions."""
    ids = list(ids)
    margins = []
    for _ in range(min(n_new, max_positions - len(ids))):
        last = head(model, hidden_of(model, ids)[-1:])[0]
        top = torch.topk(last, 2)
        margins.append(float(top.values[0] - top.values[1]))
        nxt = int(top.indices[0])
        ids.append(nxt)
        if nxt in eos_ids:
            break
    return ids, margins


# --- awq.cpp --------------------------------------------------------------------------------------

def run_awq(cmd, stdin=None, env=None):
    r = subprocess.run(cmd, input=None if stdin is None else stdin.encode("utf-8"),
                       capture_output=True, timeout=1800,
                       env=None if env is None else {**os.environ, **env})
    stderr = r.stderr.decode("utf-8", errors="replace")
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {stderr.strip()}")
    return r.stdout.decode("utf-8", errors="replace")


def awq_eval(awq, folder, text_path, ctx, n_tokens, stdin=None):
    out = run_awq([awq, "eval", folder, "--ppl", text_path, "--ctx", str(ctx), "--max-tokens",
                   str(n_tokens), "--json", "-q"], stdin)
    return json.loads(out)


def fp32_int4_kernel():
    """The fp32-activation int4 kernel this CPU runs (awq eval's choice for prompts): avx2 where
    AVX2 + FMA + F16C exist, else the scalar reference."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        flags = []
    return "avx2" if {"avx2", "fma", "f16c"} <= set(flags) else "reference"


def awq_generate(awq, folder, prompt, n_new, kernel):
    env = None if kernel == "default" else {"AWQ_INT4_KERNEL": kernel}
    return run_awq([awq, "generate", folder, "-p", prompt, "-n", str(n_new), "-q"], env=env)


# --- main -----------------------------------------------------------------------------------------

def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def parse_ppl_config(s):
    n, ctx = (int(x) for x in s.split(":"))
    if ctx < 2 or n < ctx:
        raise argparse.ArgumentTypeError(f"--ppl-config {s}: need N >= CTX >= 2")
    return n, ctx


def eos_ids_of(folder, config, tok):
    """The ids awq generate stops at: the config's and generation_config's eos_token_id, the
    tokenizer's EOS, and the special added tokens that end a turn (END_TOKENS)."""
    ids = set()
    gen_cfg = os.path.join(folder, "generation_config.json")
    srcs = [getattr(config, "eos_token_id", None), tok.eos_token_id]
    if os.path.exists(gen_cfg):
        with open(gen_cfg) as f:
            srcs.append(json.load(f).get("eos_token_id"))
    for src in srcs:
        if src is not None:
            ids.update(src if isinstance(src, list) else [src])
    for i, t in tok.added_tokens_decoder.items():
        if getattr(t, "special", False) and str(t) in END_TOKENS:
            ids.add(i)
    return ids


def awq_printed(tok, prompt, ids):
    """The text `awq generate` prints for these new ids: the prompt as given, then each token's
    text as its streaming decoder hands it over, specials included. It writes each piece with
    fputs, so a piece ends at its first NUL byte (a byte-fallback or byte-level token for 0x00);
    the same cut is made here. Pieces are the growth of decode(ids[:j])."""
    out, prev = [prompt], ""
    for j in range(1, len(ids) + 1):
        cur = tok.decode(ids[:j], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        # A trailing U+FFFD may be an incomplete UTF-8 sequence that the next token completes:
        # hold it back, as the streaming decoder does.
        stable = cur.rstrip("\ufffd") if j < len(ids) else cur
        if not stable.startswith(prev):
            return prompt + tok.decode(ids, skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        out.append(stable[len(prev):].split("\x00")[0])
        prev = stable
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="awq.cpp output folder (AutoAWQ GEMM layout)")
    ap.add_argument("--awq", default=os.path.join(REPO, "build", "awq"), help="awq binary")
    ap.add_argument("--text", default=os.path.join(REPO, "assets", "text", "prideprejudice.txt"))
    ap.add_argument("--autoawq-src", help="unpacked AutoAWQ source (has awq/utils/)")
    ap.add_argument("--tol", type=float, default=1e-4, help="relative tolerance on ppl / NLL")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--ppl-config", type=parse_ppl_config, action="append", metavar="N:CTX",
                    help="perplexity over the first N tokens in windows of CTX (repeatable; "
                         "default 2048:512 and 4096:2048)")
    ap.add_argument("--quick", action="store_true", help="only the first --ppl-config")
    ap.add_argument("--new-tokens", type=int, default=GREEDY_NEW_TOKENS,
                    help="greedy tokens per prompt (capped by max_position_embeddings)")
    ap.add_argument("--gen-kernel", default="fp32",
                    help="AWQ_INT4_KERNEL for awq generate: fp32 (avx2, or reference without "
                         "AVX2), a kernel name, or 'default' (awq generate's own int8 choice)")
    ap.add_argument("--per-token", action="store_true",
                    help="also run awq generate -n k for every k, so each new token's text is "
                         "compared, not only the whole continuation (pins the ids; one model load "
                         "per token)")
    ap.add_argument("--skip-native", action="store_true", help="do not try step 1's load")
    ap.add_argument("--native-dtype", default="float32",
                    help="dtype for step 1's from_pretrained (float32, float16, auto)")
    args = ap.parse_args()
    ppl_configs = args.ppl_config or PPL_CONFIGS
    if args.quick:
        ppl_configs = ppl_configs[:1]
    gen_kernel = fp32_int4_kernel() if args.gen_kernel == "fp32" else args.gen_kernel
    torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoTokenizer
    transformers.logging.set_verbosity_error()
    folder = os.path.abspath(args.dir)
    results = {"dir": folder, "versions": {"torch": torch.__version__,
                                           "transformers": transformers.__version__},
               "awq_generate_int4_kernel": gen_kernel}
    rows = []  # (check, python, awq.cpp, diff, ok)

    # 1. transformers: config, quantization config, native load
    log("1. transformers: config.json, quantization_config, native load")
    config, cfg_rep = load_config(folder)
    cfg_rep.update(quant_config_report(config))
    results["config"] = cfg_rep
    for k, v in cfg_rep.items():
        log(f"   {k}: {v}")
    rows.append(("AutoConfig.from_pretrained(DIR)",
                 type(config).__name__ if cfg_rep["autoconfig_ok"] else "raises",
                 "config.json", "parsed" if cfg_rep["autoconfig_ok"]
                 else cfg_rep["autoconfig"].split(":")[0], cfg_rep["autoconfig_ok"]))
    c = cfg_rep["config"]
    rows.append(("AutoConfig quantization_config", cfg_rep["config_class"], "config.json",
                 f"w{c['bits']} g{c['group_size']} {c['format']}", cfg_rep["config_ok"]))
    native_rep, native = ({"native_load": "skipped"}, None) if args.skip_native else \
        try_native_load(folder, args.native_dtype)
    results["native"] = native_rep
    for k, v in native_rep.items():
        log(f"   {k}: {v}")

    # 2. reference model
    log("2. fp32 reference model, linears via AutoAWQ's dequantize_gemm")
    packing, packing_desc = find_packing_utils(args.autoawq_src)
    results["unpacking"] = packing_desc
    results["autoawq_import"] = autoawq_import_status(args.autoawq_src)
    log(f"   unpacking with {packing_desc}")
    log(f"   `import awq` (full package): {results['autoawq_import']}")
    t0 = time.time()
    model, info = build_reference(folder, config, packing)
    results["reference"] = info
    log(f"   {info} ({time.time() - t0:.1f}s)")
    # config= spares the tokenizer a second AutoConfig (which raises where step 1's did).
    tok = AutoTokenizer.from_pretrained(folder, config=config)
    eos_ids = eos_ids_of(folder, config, tok)
    max_positions = int(getattr(config, "max_position_embeddings", 1 << 30))
    results["tokenizer"] = {"class": type(tok).__name__, "eos_ids": sorted(eos_ids)}
    log(f"   tokenizer {type(tok).__name__}, stop ids {sorted(eos_ids)}")

    # 3+4. prompts
    log("3. prompts: NLL and greedy continuation, Python vs awq.cpp "
        f"(awq generate with AWQ_INT4_KERNEL={gen_kernel})")
    results["prompts"] = []
    for k, p in enumerate(PROMPTS):
        ids = tok(p).input_ids
        if k == 0:
            dh = check_head(model, ids)
            results["head_check_max_abs"] = dh
            log(f"   chunked head vs model forward on prompt 1: max |diff| {dh:.2e}")
            assert dh <= 1e-4, dh
        t0 = time.time()
        py_nll = float(nll_of(model, ids).sum())
        cpp = awq_eval(args.awq, folder, "-", len(ids), len(ids), stdin=p)
        gen_ids, margins = greedy(model, ids, args.new_tokens, eos_ids, max_positions)
        new_ids = gen_ids[len(ids):]
        shown = new_ids[:-1] if new_ids and new_ids[-1] in eos_ids else new_ids
        py_text = awq_printed(tok, p, shown)
        cpp_text = awq_generate(args.awq, folder, p, args.new_tokens, gen_kernel)
        cpp_text = cpp_text[:-1] if cpp_text.endswith("\n") else cpp_text
        same_text = py_text == cpp_text
        per_token = False
        if args.per_token and same_text:
            # The j-token continuations of both sides for every j < n as well: equal texts at
            # every j mean the same split into tokens, i.e. the same ids (token strings differ).
            per_token = True
            for j in range(1, len(shown)):
                want = awq_printed(tok, p, shown[:j])
                got = awq_generate(args.awq, folder, p, j, gen_kernel)
                got = got[:-1] if got.endswith("\n") else got
                if got != want:
                    log(f"   prompt {k + 1}, after {j} tokens: py {want!r} cpp {got!r}")
                    same_text = per_token = False
                    break
        common = next((i for i in range(min(len(py_text), len(cpp_text)))
                       if py_text[i] != cpp_text[i]), min(len(py_text), len(cpp_text)))
        d = rel(py_nll, cpp["nll_sum"])
        ok_nll = d <= args.tol and cpp["n_tokens"] == len(ids)
        rows.append((f"NLL sum, {len(ids)}-token prompt {k + 1}",
                     f"{py_nll:.6f}", f"{cpp['nll_sum']:.6f}", f"{d:.2e}", ok_nll))
        what = ("same ids (text at every token)" if per_token else "same text") \
            if same_text else f"differ at char {common}"
        rows.append((f"greedy {len(new_ids)} tokens, prompt {k + 1}", "", "", what, same_text))
        results["prompts"].append({
            "prompt": p, "ids": ids, "n_tokens": len(ids), "nll_sum_python": py_nll,
            "nll_sum_awqcpp": cpp["nll_sum"], "rel_diff": d, "n_tokens_awqcpp": cpp["n_tokens"],
            "greedy_python": py_text, "greedy_awqcpp": cpp_text, "greedy_same": same_text,
            "greedy_checked_per_token": per_token,
            "greedy_ids_python": new_ids, "min_top1_top2_margin": min(margins, default=None)})
        log(f"   prompt {k + 1}: NLL {py_nll:.6f} vs {cpp['nll_sum']:.6f} "
            f"(rel {d:.2e}); greedy {'same' if same_text else 'DIFFERENT'}; min margin "
            f"{min(margins, default=float('nan')):.3f} ({time.time() - t0:.1f}s)\n"
            f"     py : {py_text!r}" + ("" if same_text else f"\n     cpp: {cpp_text!r}"))

    # 3+4. perplexity
    log(f"3. perplexity on {args.text}")
    with open(args.text, encoding="utf-8", newline="") as f:
        text = f.read()
    # awq eval: tok.Encode(text, add_special=true, parse_special=false), i.e. the tokenizer's own
    # special-token rule once for the whole text (Gemma: one <bos> at its start, none per window).
    # The first max(N) characters' worth is enough; tokenizing only a prefix could split a word
    # differently at the cut, so the cut is made well past the last token needed.
    need = max(n for n, _ in ppl_configs)
    chars = min(len(text), need * 16)
    all_ids = tok(text[:chars]).input_ids
    while len(all_ids) < need + 8 and chars < len(text):
        chars = min(len(text), chars * 2)
        all_ids = tok(text[:chars]).input_ids
    all_ids = all_ids[:need]
    bos = getattr(tok, "bos_token_id", None)
    results["text_ids_head"] = all_ids[:8]
    once = " (BOS once, at the start of the stream)" if bos is not None and all_ids[:1] == [bos] \
        else ""
    log(f"   first {len(all_ids)} tokens (Python tokenizer), starting {all_ids[:4]}{once}")
    # The same ids from the tokenizers library on tokenizer.json alone (informational: awq.cpp
    # has no id dump; its ids are the ones that make the NLL sums and perplexities agree).
    tj = os.path.join(folder, "tokenizer.json")
    if os.path.exists(tj):
        from tokenizers import Tokenizer
        raw = Tokenizer.from_file(tj)
        agree = all(raw.encode(p).ids == tok(p).input_ids for p in PROMPTS) and \
            raw.encode(text[:chars]).ids[:need] == all_ids
        results["tokenizers_library_agrees"] = agree
        log(f"   tokenizers.Tokenizer.from_file(tokenizer.json) gives the same ids: {agree}")
    results["perplexity"] = []
    for n_tok, ctx in ppl_configs:
        if len(all_ids) < ctx:
            raise SystemExit(f"the text has {len(all_ids)} tokens, fewer than ctx {ctx}")
        t0 = time.time()
        py = perplexity(model, all_ids, n_tok, ctx)
        t_py = time.time() - t0
        t0 = time.time()
        cpp = awq_eval(args.awq, folder, args.text, ctx, n_tok)
        t_cpp = time.time() - t0
        d = rel(py["perplexity"], cpp["perplexity"])
        ok = (d <= args.tol and py["n_predicted"] == cpp["n_predicted"]
              and py["n_tokens"] == cpp["n_tokens"])
        entry = {"n_tokens": n_tok, "ctx": ctx, "python": py, "awqcpp": cpp, "rel_diff": d,
                 "seconds_python": t_py, "seconds_awqcpp": t_cpp}
        rows.append((f"ppl {n_tok} tok ctx {ctx}", f"{py['perplexity']:.6f}",
                     f"{cpp['perplexity']:.6f}", f"{d:.2e}", ok))
        log(f"   N={n_tok} ctx={ctx}: Python {py['perplexity']:.6f} ({py['n_predicted']} "
            f"predicted, {t_py:.0f}s), awq.cpp {cpp['perplexity']:.6f} ({cpp['n_predicted']}, "
            f"{t_cpp:.0f}s), rel diff {d:.2e}")
        if native is not None:
            try:
                nat = perplexity(native, all_ids, n_tok, ctx)
            except Exception as e:  # noqa: BLE001 - a kernel that refuses the shapes is a finding
                msg = f"{type(e).__name__}: {' '.join(str(e).split())}"
                entry["native_error"] = msg
                rows.append((f"ppl {n_tok} tok ctx {ctx}, transformers-native", "raises", "",
                             msg[:60], None))
                log(f"   transformers-native: {msg}")
                results["perplexity"].append(entry)
                continue
            entry["native"] = nat
            dn = rel(nat["perplexity"], cpp["perplexity"])
            entry["native_rel_diff"] = dn
            fp32 = native.dtype == torch.float32
            rows.append((f"ppl {n_tok} tok ctx {ctx}, transformers-native {native.dtype}"
                         .replace("torch.", ""), f"{nat['perplexity']:.6f}",
                         f"{cpp['perplexity']:.6f}", f"{dn:.2e}", dn <= args.tol if fp32 else None))
            log(f"   transformers-native: {nat['perplexity']:.6f}, rel diff {dn:.2e}")
        results["perplexity"].append(entry)

    # table
    w0 = max(len(r[0]) for r in rows)
    w1 = max(max(len(r[1]) for r in rows), len("Python"))
    w2 = max(max(len(r[2]) for r in rows), len("awq.cpp"))
    log("")
    log(f"{'check':<{w0}}  {'Python':>{w1}}  {'awq.cpp':>{w2}}  {'rel diff':>20}  result")
    for name, a, b, d, ok in rows:
        res = "info" if ok is None else ("PASS" if ok else "FAIL")
        log(f"{name:<{w0}}  {a:>{w1}}  {b:>{w2}}  {d:>20}  {res}")
    n_fail = sum(1 for r in rows if r[4] is False)
    results["rows"] = [{"check": r[0], "python": r[1], "awqcpp": r[2], "diff": r[3],
                        "result": None if r[4] is None else bool(r[4])} for r in rows]
    results["failures"] = n_fail
    log(f"\ntransformers native load: {native_rep.get('native_load')}")
    log(f"{'FAIL' if n_fail else 'PASS'}: {n_fail} failing check(s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
