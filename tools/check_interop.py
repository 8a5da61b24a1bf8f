#!/usr/bin/env python3
"""Checks that the Python ecosystem reads an awq.cpp checkpoint folder and computes what awq.cpp
computes from it.

Usage:
  python3 tools/check_interop.py DIR [--awq build/awq] [--text assets/text/prideprejudice.txt]
      [--autoawq-src DIR] [--tol 1e-4] [--json OUT.json] [--quick]

DIR is an AutoAWQ-GEMM folder written by `awq quantize`. Steps (docs/INTEROP.md):

 1. transformers: AutoConfig must parse quantization_config into an AwqConfig (bits, group size,
    GEMM format as in the file); then AutoModelForCausalLM.from_pretrained(DIR, device_map="cpu")
    is tried and whatever it raises is recorded verbatim (transformers 5 needs gptqmodel for AWQ).
    When it does load, its perplexities are reported too (informational: its kernels may run in
    fp16).
 2. Reference model: a plain fp32 model built from DIR's config without quantization_config,
    every quantized linear's weight = AutoAWQ's dequantize_gemm(qweight, qzeros, scales) (from
    awq/utils/packing_utils.py of an installed autoawq, or of --autoawq-src, loaded as a file so the
    package __init__ and its CUDA/`datasets` imports are not needed; a faithful transcription
    otherwise, and the output says which), transposed to [out, in]; scales in fp32, as awq.cpp
    dequantizes. Every other tensor is loaded as stored (F16 -> fp32); tied embeddings respected;
    tokenizer = AutoTokenizer.from_pretrained(DIR).
 3. With it, in fp32 on the CPU: greedy continuations and the NLL of 4 short prompts, and the
    perplexity of TEXT for (2048 tokens, ctx 512) and (4096 tokens, ctx 2048): non-overlapping
    windows, each from a fresh context, NLL of tokens 1..ctx-1, ppl = exp(sum / count).
 4. The same through `awq eval` / `awq generate`; perplexities and prompt NLL sums must agree
    within --tol relative, token counts exactly, greedy texts exactly. Exit status 1 on any FAIL.
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


def try_native_load(folder, dtype):
    """Step 1. Returns (report dict, model or None)."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.quantizers.auto import AutoQuantizationConfig
    rep = {}
    config = AutoConfig.from_pretrained(folder)
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
    t0 = time.time()
    try:
        kw = {} if dtype == "auto" else {"dtype": getattr(torch, dtype)}
        model = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu", **kw)
        model.eval()
        lin = model.get_submodule(next(n for n, _ in model.named_modules() if n.endswith("q_proj")))
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
        rep["native_load"] = f"{type(e).__name__}: {e}"
        rep["native_loaded"] = False
        rep["native_traceback_tail"] = traceback.format_exc().strip().splitlines()[-4:]
        rep["transformers"] = transformers.__version__
        return rep, None


def build_reference(folder, packing):
    """Step 2: fp32 model with AutoAWQ-dequantized linears."""
    from transformers import AutoConfig, AutoModelForCausalLM
    config = AutoConfig.from_pretrained(folder)
    qc = config.quantization_config
    qc = qc if isinstance(qc, dict) else qc.to_dict()
    bits, group = qc["bits"], qc["group_size"]
    assert qc.get("version", qc.get("format", "gemm")).lower() == "gemm", qc
    del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                             attn_implementation="eager")
    tensors = load_tensors(folder)
    state, n_quant = {}, 0
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
            n_quant += 1
        else:
            state[name] = t.float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    allowed_missing = {"lm_head.weight"} if tied else set()
    bad_missing = [k for k in missing if k not in allowed_missing]
    if bad_missing or unexpected:
        raise SystemExit(f"state dict mismatch: missing {bad_missing}, unexpected {unexpected}")
    if tied:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.eval()
    dtypes = sorted({str(t.dtype).replace("torch.", "") for n, t in tensors.items()
                     if not n.endswith((".qweight", ".qzeros", ".scales"))})
    info = {"bits": bits, "group_size": group, "quantized_linears": n_quant,
            "plain_tensors": len(state) - n_quant, "plain_dtypes": dtypes, "tied": tied,
            "model_class": type(model).__name__}
    return model, info


# --- computing ------------------------------------------------------------------------------------

@torch.no_grad()
def logits_of(model, ids):
    out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0].float()


def nll_of(model, ids):
    """float64 NLL of tokens 1..len-1 given their prefix (fresh context)."""
    lg = logits_of(model, ids)[:-1].double()
    tgt = torch.tensor(ids[1:], dtype=torch.long)
    return (torch.logsumexp(lg, dim=-1) - lg.gather(1, tgt[:, None])[:, 0]).numpy()


def perplexity(model, ids, n_tokens, ctx):
    ids = ids[:n_tokens]
    nlls = [nll_of(model, ids[s:s + ctx]) for s in range(0, len(ids) - ctx + 1, ctx)]
    allnll = np.concatenate(nlls)
    total = float(allnll.sum())
    return {"n_tokens": len(nlls) * ctx, "n_windows": len(nlls), "n_predicted": len(allnll),
            "nll_sum": total, "perplexity": math.exp(total / len(allnll))}


@torch.no_grad()
def greedy(model, ids, n_new, eos_ids):
    ids = list(ids)
    margins = []
    for _ in range(n_new):
        last = logits_of(model, ids)[-1]
        top = torch.topk(last, 2)
        margins.append(float(top.values[0] - top.values[1]))
        nxt = int(top.indices[0])
        ids.append(nxt)
        if nxt in eos_ids:
            break
    return ids, margins


# --- awq.cpp --------------------------------------------------------------------------------------

def run_awq(cmd, stdin=None):
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def awq_eval(awq, folder, text_path, ctx, n_tokens, stdin=None):
    out = run_awq([awq, "eval", folder, "--ppl", text_path, "--ctx", str(ctx), "--max-tokens",
                   str(n_tokens), "--json", "-q"], stdin)
    return json.loads(out)


def awq_generate(awq, folder, prompt, n_new):
    return run_awq([awq, "generate", folder, "-p", prompt, "-n", str(n_new), "-q"])


# --- main -----------------------------------------------------------------------------------------

def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="awq.cpp output folder (AutoAWQ GEMM layout)")
    ap.add_argument("--awq", default=os.path.join(REPO, "build", "awq"), help="awq binary")
    ap.add_argument("--text", default=os.path.join(REPO, "assets", "text", "prideprejudice.txt"))
    ap.add_argument("--autoawq-src", help="unpacked AutoAWQ source (has awq/utils/)")
    ap.add_argument("--tol", type=float, default=1e-4, help="relative tolerance on ppl / NLL")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help="only the (2048, 512) perplexity")
    ap.add_argument("--skip-native", action="store_true", help="do not try step 1's load")
    ap.add_argument("--native-dtype", default="float32",
                    help="dtype for step 1's from_pretrained (float32, float16, auto)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoTokenizer
    transformers.logging.set_verbosity_error()
    folder = os.path.abspath(args.dir)
    results = {"dir": folder, "versions": {"torch": torch.__version__,
                                           "transformers": transformers.__version__}}
    rows = []  # (check, python, awq.cpp, diff, ok)

    # 1. transformers native
    log("1. transformers native load")
    native_rep, native = ({"native_load": "skipped"}, None) if args.skip_native else \
        try_native_load(folder, args.native_dtype)
    results["native"] = native_rep
    for k, v in native_rep.items():
        log(f"   {k}: {v}")
    if "config_ok" in native_rep:
        c = native_rep["config"]
        rows.append(("AutoConfig quantization_config", native_rep["config_class"],
                     "config.json", f"w{c['bits']} g{c['group_size']} {c['format']}",
                     native_rep["config_ok"]))

    # 2. reference model
    log("2. fp32 reference model, linears via AutoAWQ's dequantize_gemm")
    packing, packing_desc = find_packing_utils(args.autoawq_src)
    results["unpacking"] = packing_desc
    results["autoawq_import"] = autoawq_import_status(args.autoawq_src)
    log(f"   unpacking with {packing_desc}")
    log(f"   `import awq` (full package): {results['autoawq_import']}")
    t0 = time.time()
    model, info = build_reference(folder, packing)
    results["reference"] = info
    log(f"   {info} ({time.time() - t0:.1f}s)")
    tok = AutoTokenizer.from_pretrained(folder)
    eos_ids = set()
    gen_cfg = os.path.join(folder, "generation_config.json")
    for src in ([json.load(open(gen_cfg)).get("eos_token_id")] if os.path.exists(gen_cfg) else []) \
            + [tok.eos_token_id]:
        if src is not None:
            eos_ids.update(src if isinstance(src, list) else [src])

    # 3+4. prompts
    log("3. prompts: NLL and greedy continuation, Python vs awq.cpp")
    results["prompts"] = []
    for p in PROMPTS:
        ids = tok(p).input_ids
        t0 = time.time()
        py_nll = float(nll_of(model, ids).sum())
        cpp = awq_eval(args.awq, folder, "-", len(ids), len(ids), stdin=p)
        gen_ids, margins = greedy(model, ids, GREEDY_NEW_TOKENS, eos_ids)
        py_text = tok.decode(gen_ids, skip_special_tokens=True)
        cpp_text = awq_generate(args.awq, folder, p, GREEDY_NEW_TOKENS)
        cpp_text = cpp_text[:-1] if cpp_text.endswith("\n") else cpp_text
        same_text = py_text == cpp_text
        common = next((i for i in range(min(len(py_text), len(cpp_text)))
                       if py_text[i] != cpp_text[i]), min(len(py_text), len(cpp_text)))
        d = rel(py_nll, cpp["nll_sum"])
        ok_nll = d <= args.tol and cpp["n_tokens"] == len(ids)
        rows.append((f"NLL sum, {len(ids)}-token prompt {PROMPTS.index(p) + 1}",
                     f"{py_nll:.6f}", f"{cpp['nll_sum']:.6f}", f"{d:.2e}", ok_nll))
        rows.append((f"greedy {GREEDY_NEW_TOKENS} tokens, prompt {PROMPTS.index(p) + 1}",
                     "", "", "same text" if same_text else f"differ at char {common}",
                     same_text))
        results["prompts"].append({
            "prompt": p, "n_tokens": len(ids), "nll_sum_python": py_nll,
            "nll_sum_awqcpp": cpp["nll_sum"], "rel_diff": d, "n_tokens_awqcpp": cpp["n_tokens"],
            "greedy_python": py_text, "greedy_awqcpp": cpp_text, "greedy_same": same_text,
            "greedy_ids_python": gen_ids[len(ids):], "min_top1_top2_margin": min(margins)})
        log(f"   prompt {PROMPTS.index(p) + 1}: NLL {py_nll:.6f} vs {cpp['nll_sum']:.6f} "
            f"(rel {d:.2e}); greedy {'same' if same_text else 'DIFFERENT'}; min margin "
            f"{min(margins):.3f} ({time.time() - t0:.1f}s)\n     py : {py_text!r}"
            + ("" if same_text else f"\n     cpp: {cpp_text!r}"))

    # 3+4. perplexity
    log(f"3. perplexity on {args.text}")
    with open(args.text, encoding="utf-8", newline="") as f:
        text = f.read()
    all_ids = tok(text).input_ids
    log(f"   {len(all_ids)} tokens (Python tokenizer)")
    results["perplexity"] = []
    for n_tok, ctx in PPL_CONFIGS[:1] if args.quick else PPL_CONFIGS:
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
            nat = perplexity(native, all_ids, n_tok, ctx)
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
