#!/usr/bin/env python3
"""llama.cpp's own quantization of a model, measured two ways, as the reference for awq.cpp's GGUFs.

For each model GGUF (default: SmolLM2-135M-Instruct Q4_1; --model gemma for Gemma-3-270M, --model
all for both) this script, with the tools that tools/build_llamacpp.sh builds:

  1. makes the full-precision baseline: `llama-quantize --allow-requantize IN BASE.gguf F32`
     (F16 when F32 is refused). The default models are only published quantized, so the baseline
     is their dequantized weights, not the original checkpoint;
  2. quantizes it plainly with `llama-quantize` to each --types type (Q4_0, Q4_K_M, Q3_K_M);
  3. computes an importance matrix with `llama-imatrix` on the calibration text (*Emma*,
     -c 512 --chunks 20) and quantizes with `llama-quantize --imatrix` to the same types;
  4. scores every file (and the EXTRA GGUFs given as arguments, e.g. awq.cpp's) on held-out text
     (*Pride and Prejudice*, -c 2048, --chunks 8) with `llama-perplexity` and with
     `awq eval --protocol llama.cpp` (the same windows, scoring and BOS rule; docs/LLAMACPP_REFERENCE.md);
  5. compares the token ids both tools make of the text (llama-tokenize vs awq eval --save-ids);
  6. prints one table (type, method, file MiB, bits per weight, llama-perplexity, awq eval) and
     writes it as JSON (--json, default out/llamacpp_reference/results.json).

Steps whose output exists are skipped (perplexities are cached per file as JSON next to it, keyed
by file size and mtime and the evaluation settings); --force redoes them. Standard library only.

  python3 tools/llamacpp_reference.py                           # SmolLM2, all steps
  python3 tools/llamacpp_reference.py --model all               # SmolLM2 and Gemma-3-270M
  python3 tools/llamacpp_reference.py out/awq_gguf/*.gguf       # plus awq.cpp's files
  python3 tools/llamacpp_reference.py --no-awq --chunks 4       # llama.cpp only, shorter
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "assets", "peers", "llama.cpp-build", "bin")
MODELS = {
    "smollm2": os.path.join(ROOT, "assets", "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma": os.path.join(ROOT, "assets", "models", "gemma-3-270m-q4_k_m.gguf"),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, log_path, env=None):
    """Runs cmd with its output in log_path; returns (rc, seconds, output)."""
    log("$ " + " ".join(cmd))
    t0 = time.time()
    with open(log_path, "w") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    dt = time.time() - t0
    with open(log_path, errors="replace") as f:
        out = f.read()
    if p.returncode != 0:
        log(f"  exit {p.returncode} after {dt:.1f} s; last lines of {log_path}:")
        for line in out.strip().splitlines()[-8:]:
            log("    " + line)
    return p.returncode, dt, out


def mib(path):
    return os.path.getsize(path) / (1024 * 1024)


def stamp(path):
    st = os.stat(path)
    return f"{st.st_size}:{int(st.st_mtime)}"


def cached(cache_path, key):
    try:
        with open(cache_path) as f:
            c = json.load(f)
        return c if c.get("key") == key else None
    except (OSError, ValueError):
        return None


def save(cache_path, obj):
    with open(cache_path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(cache_path + ".tmp", cache_path)


def make_quant(args, src, dst, qtype, imatrix=None):
    """llama-quantize src -> dst (skipped when dst exists); returns the seconds it took or None."""
    if os.path.exists(dst) and not args.force:
        return None
    cmd = [os.path.join(BIN, "llama-quantize")]
    if imatrix:
        cmd += ["--imatrix", imatrix]
    if qtype in ("F32", "F16"):
        cmd += ["--allow-requantize"]
    cmd += [src, dst + ".tmp", qtype, str(args.threads)]
    rc, dt, _ = run(cmd, dst + ".log")
    if rc != 0:
        if os.path.exists(dst + ".tmp"):
            os.remove(dst + ".tmp")
        return False
    os.replace(dst + ".tmp", dst)
    return dt


def llama_ppl(args, path):
    """llama-perplexity of one GGUF: ppl, +/-, chunks, type, size, BPW, seconds (cached)."""
    key = f"{stamp(path)} {stamp(args.text)} c{args.ctx} chunks{args.chunks} b{args.ctx}"
    cache_path = path + ".llama_ppl.json"
    c = cached(cache_path, key)
    if c and not args.force:
        return c
    cmd = [os.path.join(BIN, "llama-perplexity"), "-m", path, "-f", args.text, "-c", str(args.ctx),
           "-b", str(args.ctx), "--chunks", str(args.chunks), "-t", str(args.threads)]
    rc, dt, out = run(cmd, path + ".llama_ppl.log")
    r = {"key": key, "seconds": round(dt, 1)}
    if rc != 0:
        r["error"] = f"llama-perplexity exit {rc}; see {path}.llama_ppl.log"
        return r
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
    r["ppl"] = float(m.group(1)) if m else None
    r["ppl_err"] = float(m.group(2)) if m else None
    m = re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+)", out)
    r["chunks"] = int(m.group(1)) if m else None
    m = re.search(r"file type\s+=\s+(\S.*?)\s*$", out, re.M)
    r["file_type"] = m.group(1) if m else None
    m = re.search(r"file size\s+=\s+([0-9.]+) (MiB|GiB) \(([0-9.]+) BPW\)", out)
    if m:
        r["tensor_mib"] = float(m.group(1)) * (1024 if m.group(2) == "GiB" else 1)
        r["bpw"] = float(m.group(3))
    m = re.search(r"model params\s+=\s+([0-9.]+) ([KMBT])", out)
    if m:
        r["params"] = float(m.group(1)) * {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[m.group(2)]
    m = re.search(r"^build: (.*)$", out, re.M)
    r["build"] = m.group(1) if m else None
    m = re.search(r"^system_info: (.*)$", out, re.M)
    r["system_info"] = m.group(1).strip() if m else None
    save(cache_path, r)
    return r


def awq_ppl(args, path, save_ids=None):
    """awq eval --protocol llama.cpp of one GGUF (cached)."""
    key = (f"{stamp(path)} {stamp(args.text)} c{args.ctx} chunks{args.chunks} "
           f"awq {stamp(args.awq)}")
    cache_path = path + ".awq_ppl.json"
    c = cached(cache_path, key)
    if c and not args.force and (save_ids is None or os.path.exists(save_ids)):
        return c
    cmd = [args.awq, "eval", path, "--ppl", args.text, "--ctx", str(args.ctx), "--max-tokens",
           str(args.chunks * args.ctx), "--protocol", "llama.cpp", "--json"]
    if save_ids:
        cmd += ["--save-ids", save_ids]
    rc, dt, out = run(cmd, path + ".awq_ppl.log")
    r = {"key": key, "seconds": round(dt, 1)}
    if rc != 0:
        last = [l for l in out.strip().splitlines() if l.strip()]
        r["error"] = (last[-1] if last else f"exit {rc}")[:200]
        return r
    j = json.loads(out[out.index("{"):out.rindex("}") + 1])
    r.update({k: j[k] for k in ("perplexity", "n_windows", "n_predicted", "text_tokens",
                                "tokens_per_second")})
    save(cache_path, r)
    return r


def compare_tokens(args, base, awq_ids_path, work):
    """llama-tokenize's ids of the text as llama-perplexity reads it vs awq eval's."""
    with open(args.text, "rb") as f:
        text = f.read()
    if text.endswith(b"\n"):  # llama.cpp's -f drops one trailing newline (common/arg.cpp)
        text = text[:-1]
    prompt = os.path.join(work, "ppl_text.txt")
    with open(prompt, "wb") as f:
        f.write(text)
    out_path = os.path.join(work, os.path.basename(base) + ".llama_ids.txt")
    if not os.path.exists(out_path) or args.force:
        cmd = [os.path.join(BIN, "llama-tokenize"), "-m", base, "-f", prompt, "--ids",
               "--no-parse-special", "--log-disable"]
        log("$ " + " ".join(cmd))
        with open(out_path + ".tmp", "w") as f:
            p = subprocess.run(cmd, stdout=f, stderr=subprocess.DEVNULL)
        if p.returncode != 0:
            return {"error": f"llama-tokenize exit {p.returncode}"}
        os.replace(out_path + ".tmp", out_path)
    with open(out_path) as f:
        body = f.read()
    llama = [int(x) for x in re.findall(r"-?\d+", body[body.index("["):])]
    if not awq_ids_path or not os.path.exists(awq_ids_path):
        return {"llama_tokens": len(llama)}
    with open(awq_ids_path) as f:
        ours = json.load(f)
    first_diff = next((i for i, (a, b) in enumerate(zip(llama, ours)) if a != b),
                      None if len(llama) == len(ours) else min(len(llama), len(ours)))
    n_eval = args.chunks * args.ctx
    return {"llama_tokens": len(llama), "awq_tokens": len(ours), "identical": llama == ours,
            "first_difference": first_diff,
            "identical_in_evaluated_prefix": llama[:n_eval] == ours[:n_eval],
            "mismatched_positions": sum(a != b for a, b in zip(llama, ours))}


def process_model(args, name, src):
    stem = name
    work = os.path.join(args.out, stem)
    os.makedirs(work, exist_ok=True)
    rows, info = [], {"model": stem, "source": os.path.relpath(src, ROOT),
                      "source_mib": round(mib(src), 2)}

    # 1. baseline
    base = None
    for t in ("F32", "F16"):
        path = os.path.join(work, f"{stem}.{t}.gguf")
        r = make_quant(args, src, path, t)
        if r is False:
            log(f"  llama-quantize refused {t}; trying the next")
            continue
        base, info["baseline_type"] = path, t
        if r:
            info[f"quantize_seconds_{t}"] = round(r, 1)
        break
    if base is None:
        raise SystemExit(f"cannot dequantize {src} with llama-quantize")
    files = [(info["baseline_type"], "baseline", base)]

    # 2. plain quantization
    for t in args.types:
        path = os.path.join(work, f"{stem}.{t}.gguf")
        if make_quant(args, base, path, t) is not False:
            files.append((t, "plain", path))

    # 3. importance matrix and quantization with it
    imat = os.path.join(work, f"{stem}.imatrix.gguf")
    if not os.path.exists(imat) or args.force:
        cmd = [os.path.join(BIN, "llama-imatrix"), "-m", base, "-f", args.calib, "-c",
               str(args.calib_ctx), "--chunks", str(args.calib_chunks), "-t", str(args.threads),
               "-o", imat + ".tmp.gguf"]
        rc, dt, _ = run(cmd, imat + ".log")
        if rc != 0:
            raise SystemExit(f"llama-imatrix failed; see {imat}.log")
        os.replace(imat + ".tmp.gguf", imat)
        info["imatrix_seconds"] = round(dt, 1)
    for t in args.types:
        path = os.path.join(work, f"{stem}.{t}.imatrix.gguf")
        if make_quant(args, base, path, t, imatrix=imat) is not False:
            files.append((t, "imatrix", path))

    # 4. perplexities
    ids_path = os.path.join(work, "awq_ids.json")
    for qtype, method, path in files:
        lp = llama_ppl(args, path)
        ap = (awq_ppl(args, path, save_ids=ids_path if method == "baseline" else None)
              if args.awq else None)
        rows.append(make_row(name, qtype, method, path, lp, ap))
        print_row(rows[-1])

    # 5. tokenizer agreement on the baseline
    info["tokens"] = compare_tokens(args, base, ids_path if args.awq else None, work)
    return rows, info


def make_row(model, qtype, method, path, lp, ap):
    row = {"model": model, "type": qtype, "method": method, "file": os.path.relpath(path, ROOT),
           "file_mib": round(mib(path), 2), "bpw": lp.get("bpw"),
           "llama_file_type": lp.get("file_type"), "llama_ppl": lp.get("ppl"),
           "llama_ppl_err": lp.get("ppl_err"), "llama_chunks": lp.get("chunks"),
           "llama_seconds": lp.get("seconds"), "llama_error": lp.get("error")}
    if ap is not None:
        row.update({"awq_ppl": ap.get("perplexity"), "awq_chunks": ap.get("n_windows"),
                    "awq_seconds": ap.get("seconds"), "awq_error": ap.get("error")})
        if row["llama_ppl"] and row["awq_ppl"]:
            row["rel_diff"] = row["awq_ppl"] / row["llama_ppl"] - 1
    row["build"], row["system_info"] = lp.get("build"), lp.get("system_info")
    return row


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


HEADER = (f"{'model':<10} {'type':<8} {'method':<9} {'MiB':>8} {'BPW':>6} {'llama ppl':>10} "
          f"{'awq ppl':>10} {'diff':>8}")


def print_row(r):
    diff = f"{100 * r['rel_diff']:+.3f}%" if r.get("rel_diff") is not None else "n/a"
    awq = fmt(r.get("awq_ppl"), ".4f") if not r.get("awq_error") else "error"
    print(f"{r['model']:<10} {r['type']:<8} {r['method']:<9} {r['file_mib']:>8.2f} "
          f"{fmt(r['bpw'], '.2f'):>6} {fmt(r['llama_ppl'], '.4f'):>10} {awq:>10} {diff:>8}",
          flush=True)


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"Model name:\s*(.*)", out)
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("extra", nargs="*", help="more GGUF files to score (awq.cpp's outputs)")
    ap.add_argument("--model", action="append",
                    help="smollm2, gemma, all, or a GGUF path (repeatable; default smollm2)")
    ap.add_argument("--types", default="Q4_0,Q4_K_M,Q3_K_M")
    ap.add_argument("--calib", default=os.path.join(ROOT, "assets", "text", "emma.txt"))
    ap.add_argument("--calib-ctx", type=int, default=512)
    ap.add_argument("--calib-chunks", type=int, default=20)
    ap.add_argument("--text", default=os.path.join(ROOT, "assets", "text", "prideprejudice.txt"))
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--chunks", type=int, default=8,
                    help="chunks of --ctx tokens scored (8 x 2048: 16384 tokens, 8184 scored)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--awq", default=None,
                    help="awq binary (default: build-ref/awq, else build/awq, if present)")
    ap.add_argument("--no-awq", action="store_true", help="llama-perplexity only")
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "llamacpp_reference"))
    ap.add_argument("--json", default=None, help="default: OUT/results.json")
    ap.add_argument("--force", action="store_true", help="redo steps whose output exists")
    args = ap.parse_args()
    args.types = [t for t in args.types.split(",") if t]
    args.text, args.calib = os.path.abspath(args.text), os.path.abspath(args.calib)
    if args.no_awq:
        args.awq = None
    else:
        for cand in ([args.awq] if args.awq else
                     [os.path.join(ROOT, "build-ref", "awq"), os.path.join(ROOT, "build", "awq")]):
            if cand and os.access(cand, os.X_OK):
                args.awq = os.path.abspath(cand)
                break
        else:
            raise SystemExit("no awq binary (build it, pass --awq PATH, or --no-awq)")
    for tool in ("llama-quantize", "llama-imatrix", "llama-perplexity", "llama-tokenize"):
        if not os.access(os.path.join(BIN, tool), os.X_OK):
            raise SystemExit(f"{BIN}/{tool} missing: run bash tools/build_llamacpp.sh first")
    models = []
    for m in args.model or ["smollm2"]:
        if m == "all":
            models += list(MODELS.items())
        elif m in MODELS:
            models.append((m, MODELS[m]))
        else:
            models.append((os.path.basename(m).split(".")[0], os.path.abspath(m)))
    os.makedirs(args.out, exist_ok=True)

    print(HEADER, flush=True)
    rows, infos = [], []
    for name, src in models:
        if not os.path.exists(src):
            raise SystemExit(f"{src} missing (bash scripts/setup.sh fetches the default models)")
        r, info = process_model(args, name, src)
        rows += r
        infos.append(info)
    for path in args.extra:
        path = os.path.abspath(path)
        lp = llama_ppl(args, path)
        ap_ = awq_ppl(args, path) if args.awq else None
        rows.append(make_row("extra", lp.get("file_type") or "?", os.path.basename(path), path,
                             lp, ap_))
        print_row(rows[-1])

    print("\n" + HEADER)
    for r in rows:
        print_row(r)
    for info in infos:
        t = info["tokens"]
        print(f"tokens of {os.path.basename(args.text)} ({info['model']}): llama-tokenize "
              f"{t.get('llama_tokens')}, awq {t.get('awq_tokens', 'n/a')}, identical: "
              f"{t.get('identical', 'n/a')}")
    errors = [r for r in rows if r.get("awq_error") or r.get("llama_error")]
    for r in errors:
        print(f"note: {r['file']}: {r.get('llama_error') or ''} {r.get('awq_error') or ''}")

    result = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_name(),
        "llama_cpp_build": next((r["build"] for r in rows if r.get("build")), None),
        "system_info": next((r["system_info"] for r in rows if r.get("system_info")), None),
        "awq": args.awq,
        "settings": {"text": os.path.relpath(args.text, ROOT), "ctx": args.ctx,
                     "chunks": args.chunks, "calib": os.path.relpath(args.calib, ROOT),
                     "calib_ctx": args.calib_ctx, "calib_chunks": args.calib_chunks,
                     "threads": args.threads, "awq_protocol": "llama.cpp"},
        "models": infos,
        "rows": [{k: v for k, v in r.items() if k not in ("build", "system_info")} for r in rows],
    }
    out_json = args.json or os.path.join(args.out, "results.json")
    save(out_json, result)
    print(f"\nwrote {os.path.relpath(out_json, ROOT)}")


if __name__ == "__main__":
    main()
