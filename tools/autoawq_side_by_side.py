#!/usr/bin/env python3
"""AutoAWQ 0.2.9 and awq.cpp side by side on the CPU: same model, same calibration ids, same settings.

Usage:
  PY=/work/pyenv-autoawq/bin/python   # torch 2.6.0 (CPU), transformers 4.51.3, autoawq 0.2.9
  $PY tools/autoawq_side_by_side.py [--model-gguf GGUF | --hf-dir DIR] [--samples 128]
      [--seq-len 512] [--group 64] [--w-bit 4] [--awq build/awq] [--out-dir /tmp/awq-sbs]
      [--json OUT.json] [--calib-text assets/text/emma.txt] [--eval-text ...prideprejudice.txt]
      [--eval-tokens 32768] [--eval-ctx 2048] [--threads 2] [--dtype float32|float16]
      [--calib-mode ids|text] [--apply-clip true|false] [--autoawq-cpu-fix true|false]
      [--equivalence-check] [--skip-awqcpp] [--skip-autoawq] [--skip-xcheck] [--reuse]

Steps (docs/AUTOAWQ_COMPARISON.md has the results and why each step is there):
 1. HF folder: the GGUF loaded by transformers (weights dequantized to fp32, llama.cpp's q/k row
    permutation undone) and saved with save_pretrained. Its tokenizer.json is transformers' GGUF
    conversion repaired: SmolLM2's digit-splitting pre-tokenizer put back, no BOS. transformers
    4.x makes <|im_start|> (id 1) the BOS and prepends it to every encode(); the GGUF says
    add_bos_token = false. `awq eval` of this folder must equal `awq eval` of the GGUF, which
    checks weights and tokenizer at once.
 2. Calibration ids: the calibration text tokenized once with that tokenizer (no special
    tokens), cut into --samples consecutive chunks of exactly --seq-len ids, written as
    calib_ids.jsonl ({"input_ids": [...]} per line). AutoAWQ gets the same list of id lists
    (get_calib_dataset accepts list[list[int]]); with every sample exactly max_calib_seq_len
    long, both tools build the same [samples, seq_len] batch.
 3. awq.cpp: `awq quantize HF_DIR OUT --calib-data calib_ids.jsonl ...`.
 4. AutoAWQ: AutoAWQForCausalLM.from_pretrained(HF_DIR, torch_dtype=--dtype, device_map="cpu"),
    quantize(calib_data=ids, ...), save_quantized, in a child process with torch threads =
    --threads. Its folder gets the HF folder's tokenizer files (AutoAWQ saves no tokenizer).
 5. Perplexity of the fp32 folder and both checkpoints with `awq eval` (same text, N, ctx).
 6. Cross-check: AutoAWQ's checkpoint unpacked with AutoAWQ's own dequantize_gemm into
    transformers' LlamaForCausalLM (fp32), perplexity with `awq eval`'s protocol on the same ids.
Each tool runs in its own process; time is wall-clock, peak memory is that process's ru_maxrss
(os.wait4), so both are measured the same way.

--calib-mode text reproduces a naive AutoAWQ run instead: AutoAWQ gets the calibration text's
paragraphs and tokenizes them itself with the folder's unrepaired transformers tokenizer (BOS
<|im_start|> before every paragraph), awq.cpp gets the text file.

The script runs each worker with its own interpreter (sys.executable); only the workers import
torch, transformers and awq.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_GGUF = os.path.join(REPO, "assets", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_CALIB = os.path.join(REPO, "assets", "text", "emma.txt")
DEFAULT_EVAL = os.path.join(REPO, "assets", "text", "prideprejudice.txt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_measured(cmd, log_path, env=None):
    """Runs cmd with stdout+stderr to log_path; returns (rc, wall seconds, peak RSS bytes)."""
    log("$ " + " ".join(cmd))
    t0 = time.monotonic()
    with open(log_path, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        # wait4 gives this child's own rusage; ru_maxrss is in KiB on Linux.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    return proc.returncode, wall, usage.ru_maxrss * 1024


def tail(path, n=30):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


def last_json_object(path):
    """The last top-level JSON object printed in a log (awq --json prints one, pretty)."""
    text = open(path, errors="replace").read()
    end = text.rfind("}")
    depth = 0
    for i in range(end, -1, -1):
        if text[i] == "}":
            depth += 1
        elif text[i] == "{":
            depth -= 1
            if depth == 0:
                return json.loads(text[i:end + 1])
    raise ValueError(f"no JSON object in {path}")


# ------------------------------------------------------------------------------------------------
# Workers: run in a child process (python this_script --worker NAME ...).

def worker_make_hf(a):
    """GGUF -> fp32 HF folder with a repaired tokenizer (step 1)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(a.threads)
    d, f = os.path.split(os.path.abspath(a.model_gguf))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    assert model.config.tie_word_embeddings and \
        model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), \
        "expected tied embeddings (the GGUF has no output.weight)"
    model.save_pretrained(a.hf_dir, safe_serialization=True)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    raw = tok("Hello 123").input_ids
    tok.save_pretrained(a.hf_dir)
    # Keep the unrepaired conversion for --calib-mode text (what a naive run tokenizes with).
    naive = os.path.join(a.hf_dir, "naive_tokenizer")
    os.makedirs(naive, exist_ok=True)
    tok.save_pretrained(naive)
    repair_tokenizer(a.hf_dir)
    from tokenizers import Tokenizer
    fixed = Tokenizer.from_file(os.path.join(a.hf_dir, "tokenizer.json"))
    info = {"transformers_hello_123": raw,
            "repaired_hello_123": fixed.encode("Hello 123", add_special_tokens=False).ids,
            "transformers_bos": [tok.bos_token, tok.bos_token_id],
            "transformers_add_bos": bool(getattr(tok, "add_bos_token", False))}
    json.dump(info, open(os.path.join(a.hf_dir, "tokenizer_repair.json"), "w"), indent=1)
    print(json.dumps(info))


def repair_tokenizer(hf_dir):
    """Makes transformers 4.x's GGUF tokenizer conversion tokenize as SmolLM2 (and awq.cpp) do.

    transformers ignores tokenizer.ggml.pre = "smollm" (digits isolated before the byte-level
    split), treats the model as a byte-fallback SentencePiece-like BPE, and makes <|im_start|>
    a BOS it prepends to every encode(), against add_bos_token = false in the GGUF."""
    path = os.path.join(hf_dir, "tokenizer.json")
    t = json.load(open(path, encoding="utf-8"))
    t["normalizer"] = None
    t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    t["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {}}
    t["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True}
    t["model"]["byte_fallback"] = False
    t["model"]["fuse_unk"] = False
    json.dump(t, open(path, "w", encoding="utf-8"), ensure_ascii=False)
    cpath = os.path.join(hf_dir, "tokenizer_config.json")
    c = json.load(open(cpath))
    c.update({"add_bos_token": False, "add_eos_token": False,
              "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>"})
    for k in ("legacy", "model_type", "use_default_system_prompt"):
        c.pop(k, None)
    json.dump(c, open(cpath, "w"), indent=2)


def worker_calib(a):
    """The calibration ids (step 2), checked against an independent pure-Python BPE."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(a.hf_dir, "tokenizer.json"))
    text = open(a.calib_text, encoding="utf-8").read()
    ids = tok.encode(text, add_special_tokens=False).ids
    n_avail = len(ids) // a.seq_len
    n = min(a.samples, n_avail)
    samples = [ids[i * a.seq_len:(i + 1) * a.seq_len] for i in range(n)]
    with open(a.calib_ids, "w") as f:
        for s in samples:
            f.write(json.dumps({"input_ids": s}) + "\n")
    meta = {"text": a.calib_text, "text_tokens": len(ids), "chunks_available": n_avail,
            "samples": n, "seq_len": a.seq_len, "tokens": n * a.seq_len}
    # Independent check of the ids: tools/make_model_golden.py's llama.cpp-style BPE built
    # straight from the GGUF vocabulary and merges (digits isolated, byte-level).
    if a.model_gguf and os.path.exists(a.model_gguf):
        sys.path.insert(0, os.path.join(REPO, "tools"))
        from make_model_golden import ReferenceBPE
        # Text of the used tokens plus a little more, so the last word is not cut.
        used = tok.decode(ids[:n * a.seq_len + 16], skip_special_tokens=False)
        ref = ReferenceBPE(a.model_gguf).encode(used)[:n * a.seq_len]
        meta["reference_bpe_agrees"] = ref == ids[:n * a.seq_len]
    json.dump(meta, open(a.calib_ids + ".meta.json", "w"), indent=1)
    print(json.dumps(meta))


def cpu_fixed_quantizer(base):
    """AwqQuantizer with its scale search made correct on the CPU.

    _compute_best_scale saves the module's weights as {k: v.cpu() for k, v in
    module2inspect.state_dict().items()} and restores them after each candidate. On a GPU .cpu()
    copies; on the CPU it returns the same tensor, so the saved "original" aliases the live
    weight, and the candidate's in-place fc.weight.mul_(scales) overwrites it. From the first
    candidate on, every linear of the group is left holding W * s(ratio 0) instead of W, the
    remaining candidates are scored against that, and the module keeps the corrupted weights:
    the checkpoint computes a different function (perplexity in the tens of thousands).
    The fix makes that snapshot a copy; nothing else changes."""
    class CpuFixedAwqQuantizer(base):
        def _compute_best_scale(self, x, w_mean, x_mean, module2inspect, *args, **kwargs):
            live = type(module2inspect).state_dict
            module2inspect.state_dict = lambda *a, **k: {
                n: t.detach().clone() for n, t in live(module2inspect, *a, **k).items()}
            try:
                return super()._compute_best_scale(x, w_mean, x_mean, module2inspect,
                                                   *args, **kwargs)
            finally:
                del module2inspect.state_dict  # back to the class's method
    return CpuFixedAwqQuantizer


def worker_autoawq(a):
    """AutoAWQ's quantizer on the CPU (step 4); prints a JSON summary on its last line."""
    t0 = time.monotonic()
    import torch
    torch.set_num_threads(a.threads)
    import awq
    import transformers
    from awq import AutoAWQForCausalLM
    dtype = {"float32": torch.float32, "float16": torch.float16}[a.dtype]
    t_import = time.monotonic() - t0
    model = AutoAWQForCausalLM.from_pretrained(a.hf_dir, torch_dtype=dtype, device_map="cpu",
                                               safetensors=True)
    t_load = time.monotonic() - t0 - t_import
    if a.calib_mode == "ids":
        calib = [json.loads(line)["input_ids"] for line in open(a.calib_ids)]
        tokenizer = None
    else:
        from transformers import AutoTokenizer
        # The folder's tokenizer as transformers 4.x converted it from the GGUF (BOS and all).
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(a.hf_dir, "naive_tokenizer"))
        text = open(a.calib_text, encoding="utf-8").read()
        calib = [p for p in text.split("\n\n") if p.strip()]
    quant_config = {"zero_point": True, "q_group_size": a.group, "w_bit": a.w_bit,
                    "version": "GEMM"}
    from awq.quantize.quantizer import AwqQuantizer
    quantizer_cls = cpu_fixed_quantizer(AwqQuantizer) if a.autoawq_cpu_fix == "true" \
        else AwqQuantizer
    t1 = time.monotonic()
    model.quantize(tokenizer, quant_config=quant_config, calib_data=calib,
                   max_calib_samples=a.samples, max_calib_seq_len=a.seq_len,
                   duo_scaling=True, apply_clip=a.apply_clip == "true",
                   quantizer_cls=quantizer_cls)
    t_quant = time.monotonic() - t1
    t2 = time.monotonic()
    model.save_quantized(a.autoawq_out)
    t_save = time.monotonic() - t2
    print(json.dumps({"seconds": {"import": t_import, "load": t_load, "quantize": t_quant,
                                  "save": t_save, "total": time.monotonic() - t0},
                      "torch": torch.__version__, "transformers": transformers.__version__,
                      "autoawq": getattr(awq, "__version__", "?"), "dtype": a.dtype,
                      "threads": torch.get_num_threads(), "calib_mode": a.calib_mode,
                      "cpu_fix": a.autoawq_cpu_fix, "apply_clip": a.apply_clip,
                      "calib_items": len(calib)}))


def worker_equivalence(a):
    """Whether AutoAWQ's scale search leaves the model's function unchanged (--equivalence-check).

    Without clipping and without the final quantization (export_compatible) AWQ's scaling is an
    exact re-parametrisation, so the first 2 layers must compute what they did before. Runs the
    search on 1 calibration sample with AutoAWQ as released and with the CPU fix, and reports the
    relative change of both layers' outputs on another sample (3 min on 2 busy cores)."""
    import torch
    import transformers
    torch.set_num_threads(a.threads)
    from awq import AutoAWQForCausalLM
    from awq.quantize.quantizer import AwqQuantizer
    dtype = {"float32": torch.float32, "float16": torch.float16}[a.dtype]
    ids = [json.loads(line)["input_ids"] for line in open(a.calib_ids)]
    test = torch.tensor(ids[-1:])
    out = {"torch": torch.__version__, "transformers": transformers.__version__,
           "dtype": a.dtype}
    for fix in (False, True):
        m = AutoAWQForCausalLM.from_pretrained(a.hf_dir, torch_dtype=dtype, device_map="cpu")
        m.model.model.layers = m.model.model.layers[:2]
        m.model.config.num_hidden_layers = 2
        with torch.no_grad():
            ref = m.model(test, output_hidden_states=True).hidden_states
        m.quantize(None, quant_config={"zero_point": True, "q_group_size": a.group,
                                       "w_bit": a.w_bit, "version": "GEMM"},
                   calib_data=ids[:1], max_calib_samples=1, max_calib_seq_len=a.seq_len,
                   apply_clip=False, export_compatible=True,
                   quantizer_cls=cpu_fixed_quantizer(AwqQuantizer) if fix else AwqQuantizer)
        with torch.no_grad():
            got = m.model(test, output_hidden_states=True).hidden_states
        out["with_fix" if fix else "as_released"] = [
            ((g.float() - r.float()).norm() / r.float().norm()).item()
            for g, r in zip(got[1:], ref[1:])]
    print(json.dumps(out))


def worker_xcheck(a):
    """Perplexity of AutoAWQ's checkpoint in transformers (step 6), awq eval's protocol."""
    import math
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import AutoConfig, LlamaForCausalLM
    from awq.utils.packing_utils import dequantize_gemm
    torch.set_num_threads(a.threads)
    cfg = AutoConfig.from_pretrained(a.hf_dir)
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).float().eval()
    sd = {}
    for name in sorted(os.listdir(a.autoawq_out)):
        if name.endswith(".safetensors"):
            sd.update(load_file(os.path.join(a.autoawq_out, name)))
    state = {}
    for k, v in sd.items():
        if k.endswith(".qweight"):
            p = k[:-len(".qweight")]
            w = dequantize_gemm(v, sd[p + ".qzeros"], sd[p + ".scales"].float(), a.w_bit, a.group)
            state[p + ".weight"] = w.t().contiguous().float()  # [in, out] -> [out, in]
        elif not k.endswith((".qzeros", ".scales")):
            state[k] = v.float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    assert not missing and not unexpected, (missing, unexpected)
    model.tie_weights()
    tok = Tokenizer.from_file(os.path.join(a.hf_dir, "tokenizer.json"))
    ids = tok.encode(open(a.eval_text, encoding="utf-8").read(), add_special_tokens=False).ids
    ids = ids[:a.eval_tokens] if a.eval_tokens > 0 else ids
    nll, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids), a.eval_ctx):
            w = ids[s:s + a.eval_ctx]
            if len(w) < 2:
                continue
            logits = model(torch.tensor([w])).logits[0, :-1].double()
            tgt = torch.tensor(w[1:])
            nll -= torch.log_softmax(logits, -1).gather(1, tgt[:, None]).sum().item()
            count += len(w) - 1
    print(json.dumps({"perplexity": math.exp(nll / count), "nll_sum": nll,
                      "n_predicted": count, "n_tokens": len(ids)}))


# ------------------------------------------------------------------------------------------------
# Driver.

def awq_eval(a, model, name, n_tokens=None, ctx=None):
    """`awq eval` perplexity; with --reuse an earlier result for the same model and settings."""
    n_tokens = a.eval_tokens if n_tokens is None else n_tokens
    ctx = a.eval_ctx if ctx is None else ctx
    cmd = [a.awq, "eval", model, "--ppl", a.eval_text, "--ctx", str(ctx),
           "--max-tokens", str(n_tokens), "--json", "-q"]
    cache = os.path.join(a.out_dir, f"eval_{name}.json")
    if a.reuse and os.path.exists(cache):
        r = json.load(open(cache))
        if r.get("cmd") == cmd:
            return r
    logp = os.path.join(a.out_dir, f"eval_{name}.log")
    rc, wall, _ = run_measured(cmd, logp)
    if rc != 0:
        raise SystemExit(f"awq eval {model} failed (rc {rc}):\n{tail(logp)}")
    r = last_json_object(logp)
    r["cmd"] = cmd
    json.dump(r, open(cache, "w"), indent=1)
    log(f"  {name}: ppl {r['perplexity']:.6f} over {r['n_predicted']} predicted tokens ({wall:.0f} s)")
    return r


def worker_cmd(a, name, extra=()):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name]
    for k in ("model_gguf", "hf_dir", "samples", "seq_len", "group", "w_bit", "threads", "dtype",
              "calib_text", "calib_ids", "autoawq_out", "eval_text", "eval_tokens", "eval_ctx",
              "calib_mode", "apply_clip", "autoawq_cpu_fix"):
        v = getattr(a, k)
        if v is not None:
            cmd += ["--" + k.replace("_", "-"), str(v)]
    return cmd + list(extra)


def run_worker(a, name):
    logp = os.path.join(a.out_dir, f"{name}.log")
    rc, wall, rss = run_measured(worker_cmd(a, name), logp)
    if rc != 0:
        raise SystemExit(f"worker {name} failed (rc {rc}):\n{tail(logp)}")
    return last_json_object(logp), wall, rss


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-gguf", default=DEFAULT_GGUF)
    p.add_argument("--hf-dir", help="an existing fp32 HF folder (default: made from the GGUF "
                   "under --out-dir)")
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--group", type=int, default=64)
    p.add_argument("--w-bit", type=int, default=4)
    p.add_argument("--awq", default=os.path.join(REPO, "build", "awq"))
    p.add_argument("--out-dir", default="/tmp/awq-sbs")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--calib-text", default=DEFAULT_CALIB)
    p.add_argument("--calib-ids", help="(default: OUT_DIR/calib_ids.jsonl)")
    p.add_argument("--eval-text", default=DEFAULT_EVAL)
    p.add_argument("--eval-tokens", type=int, default=32768)
    p.add_argument("--eval-ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="AutoAWQ's model dtype (its own default is float16)")
    p.add_argument("--calib-mode", default="ids", choices=["ids", "text"])
    p.add_argument("--autoawq-cpu-fix", default="true", choices=["true", "false"],
                   help="copy the weights AutoAWQ's scale search saves (false: AutoAWQ as "
                   "released, which corrupts them on the CPU)")
    p.add_argument("--equivalence-check", action="store_true",
                   help="first run AutoAWQ's scale search on 2 layers with and without the CPU "
                   "fix and report how far each moves the layers' outputs (should be ~1e-7)")
    p.add_argument("--apply-clip", default="true", choices=["true", "false"],
                   help="both tools' clip search (false: a quicker diagnostic run)")
    p.add_argument("--autoawq-out", help="(default: OUT_DIR/autoawq)")
    p.add_argument("--skip-awqcpp", action="store_true")
    p.add_argument("--skip-autoawq", action="store_true")
    p.add_argument("--skip-xcheck", action="store_true")
    p.add_argument("--reuse", action="store_true",
                   help="keep an existing HF folder, ids file and checkpoints instead of redoing them")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()

    if a.worker:
        a.hf_dir = a.hf_dir or os.path.join(a.out_dir, "hf-fp32")
        {"make_hf": worker_make_hf, "calib": worker_calib, "autoawq": worker_autoawq,
         "xcheck": worker_xcheck, "equivalence": worker_equivalence}[a.worker](a)
        return

    os.makedirs(a.out_dir, exist_ok=True)
    a.hf_dir = a.hf_dir or os.path.join(a.out_dir, "hf-fp32")
    a.calib_ids = a.calib_ids or os.path.join(a.out_dir, "calib_ids.jsonl")
    a.autoawq_out = a.autoawq_out or os.path.join(a.out_dir, "autoawq")
    awqcpp_out = os.path.join(a.out_dir, "awqcpp")
    res = {"settings": {k: getattr(a, k) for k in (
        "samples", "seq_len", "group", "w_bit", "threads", "dtype", "calib_mode", "calib_text",
        "autoawq_cpu_fix", "apply_clip",
        "eval_text", "eval_tokens", "eval_ctx", "model_gguf", "hf_dir")},
        "zero_point": True, "version": "gemm", "duo_scaling": True, "apply_clip": a.apply_clip}

    # 1. HF folder.
    own_folder = a.hf_dir == os.path.join(a.out_dir, "hf-fp32")
    if not os.path.exists(os.path.join(a.hf_dir, "config.json")) or (own_folder and not a.reuse):
        log("1. HF folder from the GGUF")
        res["make_hf"], _, _ = run_worker(a, "make_hf")
    # The folder must compute what the GGUF computes (weights, q/k order and tokenizer at once).
    # The folder must compute what the GGUF computes (weights, q/k order and tokenizer at once);
    # 4096 tokens in 2 windows are enough to tell.
    log("   checking the folder against the GGUF with awq eval")
    if a.model_gguf and os.path.exists(a.model_gguf):
        h = awq_eval(a, a.hf_dir, "check_hf", 4096, 2048)
        g = awq_eval(a, a.model_gguf, "check_gguf", 4096, 2048)
        rel = abs(g["perplexity"] - h["perplexity"]) / g["perplexity"]
        res["hf_vs_gguf"] = {"hf": h["perplexity"], "gguf": g["perplexity"], "rel": rel}
        if rel > 1e-5 or g["n_tokens"] != h["n_tokens"]:
            raise SystemExit(f"the HF folder does not compute what the GGUF computes: {h} vs {g}")
    res["ppl_fp32"] = awq_eval(a, a.hf_dir, "fp32")

    # 2. Calibration ids.
    if not (a.reuse and os.path.exists(a.calib_ids)):
        log("2. calibration ids")
        res["calib"], _, _ = run_worker(a, "calib")
    else:
        res["calib"] = json.load(open(a.calib_ids + ".meta.json"))
    if a.calib_mode == "ids" and res["calib"]["samples"] < a.samples:
        log(f"   only {res['calib']['samples']} samples of {a.seq_len} ids available")
    if res["calib"].get("reference_bpe_agrees") is False:
        raise SystemExit("the calibration ids differ from the reference BPE's")
    if a.calib_mode == "ids":
        a.samples = min(a.samples, res["calib"]["samples"])

    if a.equivalence_check:
        log("   AutoAWQ's scale search as an exact re-parametrisation (2 layers, no clip)")
        res["equivalence"], _, _ = run_worker(a, "equivalence")
        e = res["equivalence"]
        log(f"   relative change of layer 1, 2 outputs: as released "
            f"{e['as_released'][0]:.2e}, {e['as_released'][1]:.2e}; with the CPU fix "
            f"{e['with_fix'][0]:.2e}, {e['with_fix'][1]:.2e}")

    # 3. awq.cpp.
    if not a.skip_awqcpp:
        if a.reuse and os.path.exists(os.path.join(awqcpp_out, "config.json")):
            res["awqcpp"] = json.load(open(os.path.join(a.out_dir, "awqcpp_result.json")))
        else:
            log("3. awq.cpp quantize")
            calib = a.calib_ids if a.calib_mode == "ids" else a.calib_text
            cmd = [a.awq, "quantize", a.hf_dir, awqcpp_out, "--calib-data", calib,
                   "--method", "awq", "--w-bit", str(a.w_bit), "--q-group-size", str(a.group),
                   "--zero-point", "true", "--version", "gemm", "--duo-scaling", "true",
                   "--apply-clip", a.apply_clip, "--max-calib-samples", str(a.samples),
                   "--max-calib-seq-len", str(a.seq_len), "--overwrite", "--json"]
            logp = os.path.join(a.out_dir, "awqcpp_quantize.log")
            rc, wall, rss = run_measured(cmd, logp)
            if rc != 0:
                raise SystemExit(f"awq quantize failed (rc {rc}):\n{tail(logp)}")
            j = last_json_object(logp)
            res["awqcpp"] = {"wall_s": wall, "peak_rss_bytes": rss, "summary": j}
            if a.calib_mode == "ids" and j.get("calib_tokens") != a.samples * a.seq_len:
                raise SystemExit(f"awq.cpp calibrated on {j.get('calib_tokens')} tokens, "
                                 f"expected {a.samples * a.seq_len}")
            json.dump(res["awqcpp"], open(os.path.join(a.out_dir, "awqcpp_result.json"), "w"),
                      indent=1)
        res["ppl_awqcpp"] = awq_eval(a, awqcpp_out, "awqcpp")

    # 4. AutoAWQ.
    if not a.skip_autoawq:
        if a.reuse and os.path.exists(os.path.join(a.autoawq_out, "config.json")):
            res["autoawq"] = json.load(open(os.path.join(a.out_dir, "autoawq_result.json")))
        else:
            log("4. AutoAWQ quantize (child process)")
            j, wall, rss = run_worker(a, "autoawq")
            res["autoawq"] = {"wall_s": wall, "peak_rss_bytes": rss, "summary": j}
            json.dump(res["autoawq"], open(os.path.join(a.out_dir, "autoawq_result.json"), "w"),
                      indent=1)
        for name in TOKENIZER_FILES:
            shutil.copy(os.path.join(a.hf_dir, name), os.path.join(a.autoawq_out, name))
        res["ppl_autoawq"] = awq_eval(a, a.autoawq_out, "autoawq")
        if not a.skip_xcheck:
            log("6. AutoAWQ's checkpoint in transformers")
            res["xcheck_autoawq"], _, _ = run_worker(a, "xcheck")
            log(f"   transformers: ppl {res['xcheck_autoawq']['perplexity']:.6f}")

    print_table(a, res)
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)
        log(f"wrote {a.json}")


def print_table(a, res):
    gib = 1024 ** 3
    rows = [("fp32 (HF folder)", None, res["ppl_fp32"])]
    if "awqcpp" in res:
        rows.append(("awq.cpp", res["awqcpp"], res["ppl_awqcpp"]))
    if "autoawq" in res:
        rows.append((f"AutoAWQ 0.2.9 ({res['autoawq']['summary'].get('dtype', a.dtype)})",
                     res["autoawq"], res["ppl_autoawq"]))
    c = res["calib"]
    calib = (f"{a.samples} x {c['seq_len']} ids of {os.path.basename(c['text'])}"
             if a.calib_mode == "ids" else
             f"{a.samples} paragraphs of {os.path.basename(a.calib_text)}, each tool choosing "
             f"(AutoAWQ the first, awq.cpp after its seeded shuffle) and tokenizing")
    fix = "" if a.skip_autoawq else f", AutoAWQ CPU fix {a.autoawq_cpu_fix}"
    print(f"\nw{a.w_bit} g{a.group}, zero point, GEMM, clip {a.apply_clip}{fix}; calibration "
          f"{calib}; perplexity: awq eval, "
          f"{res['ppl_fp32']['n_tokens']} tokens of {os.path.basename(a.eval_text)}, "
          f"ctx {a.eval_ctx}; {a.threads} threads")
    print(f"| {'':28} | {'wall s':>8} | {'quantize s':>10} | {'peak RSS GiB':>12} | {'ppl':>10} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 12}|{'-' * 14}|{'-' * 12}|")
    for name, q, e in rows:
        if q is None:
            print(f"| {name:28} | {'':>8} | {'':>10} | {'':>12} | {e['perplexity']:10.4f} |")
            continue
        s = q["summary"]["seconds"]
        qs = s.get("quantize") if "import" in s else s.get("total")
        print(f"| {name:28} | {q['wall_s']:8.1f} | {qs:10.1f} | "
              f"{q['peak_rss_bytes'] / gib:12.2f} | {e['perplexity']:10.4f} |")
    if "awqcpp" in res and "autoawq" in res:
        r = res["autoawq"]["wall_s"] / res["awqcpp"]["wall_s"]
        res["time_ratio_autoawq_over_awqcpp"] = r
        print(f"AutoAWQ wall time / awq.cpp wall time: {r:.2f}")
    if "xcheck_autoawq" in res:
        x, e = res["xcheck_autoawq"], res["ppl_autoawq"]
        rel = abs(x["perplexity"] - e["perplexity"]) / e["perplexity"]
        res["xcheck_rel"] = rel
        print(f"AutoAWQ checkpoint in transformers (AutoAWQ's dequantize_gemm, fp32): "
              f"ppl {x['perplexity']:.6f} (rel. diff to awq eval {rel:.1e})")


if __name__ == "__main__":
    main()
