#!/usr/bin/env python3
"""awq.cpp against llama.cpp on the same shapes, threads and host, in one interleaved run.

Subjects:
  - Llama-2-7B layer shapes, 8 layers: llama.cpp Q4_0 and Q4_K_M (random F16 weights written by
    make_llama2_gguf.py, then llama-quantize) against `awq bench --synthetic llama2-7b --layers 8`
    (random int4 g128 weights, fp16 LM head; the same shapes).
  - SmolLM2-135M: llama.cpp Q4_0 requantized from the F32 GGUF against awq.cpp's AWQ w4 g64
    checkpoint (fp16 LM head).
Every round runs each subject once, in an order that alternates between rounds, with the read
and triad loops of `awq bench --memory-only` between consecutive runs; each run's decode is
divided by the better of the two bandwidth figures around it. llama-bench runs -p 512 -n 128 at
every thread count of --threads and llama.cpp's best count is taken per round and per phase.
awq.cpp runs at the same thread counts (AWQ_NUM_THREADS), its best taken the same way. Ratios are medians over
rounds of the same round's awq.cpp / llama.cpp Q4_0 figures.

Prints one table and writes JSON (--json). Python 3 standard library only, except the first
build of the 7B-shaped GGUF (numpy and llama.cpp's gguf-py; --python names an interpreter with
numpy). Files are cached in --cache (default out/peers/, git-ignored).

  python3 bench/peers/run_peers.py                      # 3 rounds, threads 1,2 (~15-20 min)
  python3 bench/peers/run_peers.py --rounds 1 --threads 2 --only 7b
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, env=None, capture=True):
    log("+ " + " ".join(cmd))
    full_env = dict(os.environ, **(env or {}))
    p = subprocess.run(cmd, env=full_env, stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None, text=True)
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr or ''}")
    return p.stdout


# --- GGUF header: which tensors a decode step reads, and their sizes --------------------------

def gguf_header(path):
    """({name: bytes} for every tensor, {key: value} for the integer metadata) of a GGUF file
    (v2/v3), from its header and tensor offsets."""
    with open(path, "rb") as f:
        def rd(fmt):
            n = struct.calcsize(fmt)
            return struct.unpack("<" + fmt, f.read(n))

        def rd_str():
            (n,) = rd("Q")
            return f.read(n).decode("utf-8", "replace")

        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
                  12: "d"}

        def skip_value(t):
            if t in scalar:
                rd(scalar[t])
            elif t == 8:
                rd_str()
            elif t == 9:
                (et,) = rd("I")
                (n,) = rd("Q")
                if et in scalar:
                    f.seek(n * struct.calcsize(scalar[et]), 1)
                else:
                    for _ in range(n):
                        skip_value(et)
            else:
                raise ValueError(f"{path}: unknown GGUF value type {t}")

        magic = f.read(4)
        if magic != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        (version,) = rd("I")
        n_tensors, n_kv = rd("QQ")
        ints = {}
        for _ in range(n_kv):
            key = rd_str()
            (t,) = rd("I")
            if t in (0, 1, 2, 3, 4, 5, 10, 11):
                (ints[key],) = rd(scalar[t])
            else:
                skip_value(t)
        alignment = ints.get("general.alignment", 32)
        infos = []
        for _ in range(n_tensors):
            name = rd_str()
            (nd,) = rd("I")
            rd("Q" * nd)
            (_ggml_type,) = rd("I")
            (offset,) = rd("Q")
            infos.append((offset, name))
        data_start = (f.tell() + alignment - 1) // alignment * alignment
    size = os.path.getsize(path) - data_start
    infos.sort()
    # Each tensor runs to the next one's offset (padding to the alignment, < 32 bytes, included).
    return ({name: (infos[i + 1][0] if i + 1 < len(infos) else size) - off
             for i, (off, name) in enumerate(infos)}, ints)


def llama_decode_bytes(path, positions):
    """(weights, KV cache) bytes one llama.cpp decode step reads, the cache at `positions`
    positions in f16 (llama-bench's default). Weights: every tensor but the token embedding (one
    row of it is read), which is the output matrix too when there is no output.weight."""
    t, kv = gguf_header(path)
    total = sum(v for k, v in t.items() if k != "token_embd.weight")
    if "output.weight" not in t:
        total += t.get("token_embd.weight", 0)
    arch = "llama"
    layers = kv.get(f"{arch}.block_count", 0)
    heads = kv.get(f"{arch}.attention.head_count", 1)
    kv_heads = kv.get(f"{arch}.attention.head_count_kv", heads)
    head_dim = kv.get(f"{arch}.attention.key_length",
                      kv.get(f"{arch}.embedding_length", 0) // heads)
    return total, int(positions * layers * 2 * kv_heads * head_dim * 2)


# --- host -------------------------------------------------------------------------------------

def cpu_model():
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = (s.strip() for s in line.split(":", 1))
                    info.setdefault(k, v)
    except OSError:
        return platform.processor()
    flags = set(info.get("flags", "").split())
    isa = [x for x in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
           if x in flags]
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model "
            f"{info.get('model', '?')}, {os.cpu_count()} CPUs, {' '.join(isa)})")


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
    except OSError:
        return "?"


# --- preparing the files ----------------------------------------------------------------------

def python_with_numpy(explicit):
    # The set-up script's environment (numpy; gguf-py also imports PyYAML) is the last resort.
    venv = os.path.join(ROOT, "assets", "python-venv", "bin", "python")
    for exe in [explicit, sys.executable, os.environ.get("PEERS_PYTHON"), venv]:
        if exe and (os.path.exists(exe) or shutil.which(exe)) and subprocess.run(
                [exe, "-c", "import numpy, yaml"], stderr=subprocess.DEVNULL).returncode == 0:
            return exe
    raise SystemExit("writing the 7B-shaped GGUF needs numpy and PyYAML (llama.cpp's gguf-py "
                     "imports it): pass --python /path/to/python with both (or set PEERS_PYTHON); "
                     f"{venv} -m pip install pyyaml adds it to the set-up script's environment")


def prepare(a):
    bin_dir = a.llama_bin
    if not os.path.exists(os.path.join(bin_dir, "llama-bench")):
        log("llama.cpp tools missing: building them (tools/build_llamacpp.sh)")
        run(["bash", os.path.join(ROOT, "tools", "build_llamacpp.sh")], capture=False)
    os.makedirs(a.cache, exist_ok=True)
    files = {}
    if "7b" in a.only:
        f16 = os.path.join(a.cache, "llama2-7b-8l.F16.gguf")
        for qt in a.llama_types.split(","):
            out = os.path.join(a.cache, f"llama2-7b-8l.{qt}.gguf")
            if not os.path.exists(out):
                if not os.path.exists(f16):
                    py = python_with_numpy(a.python)
                    env = {"PYTHONPATH": os.path.join(a.llama_src, "gguf-py")}
                    run([py, os.path.join(ROOT, "bench", "peers", "make_llama2_gguf.py"),
                         f16 + ".part", "--layers", "8"], env=env, capture=False)
                    os.replace(f16 + ".part", f16)
                run([os.path.join(bin_dir, "llama-quantize"), f16, out + ".part", qt, "2"])
                os.replace(out + ".part", out)
            files[f"7b/{qt}"] = out
    if "smol" in a.only:
        out = os.path.join(a.cache, "smollm2.Q4_0.gguf")
        if not os.path.exists(out):
            if not os.path.exists(a.smol_f32):
                # The full-precision baseline as tools/llamacpp_reference.py makes it (its step 1).
                os.makedirs(os.path.dirname(a.smol_f32) or ".", exist_ok=True)
                run([os.path.join(bin_dir, "llama-quantize"), "--allow-requantize", a.smol_source,
                     a.smol_f32 + ".part", "F32", "2"])
                os.replace(a.smol_f32 + ".part", a.smol_f32)
            run([os.path.join(bin_dir, "llama-quantize"), a.smol_f32, out + ".part", "Q4_0", "2"])
            os.replace(out + ".part", out)
        files["smol/Q4_0"] = out
        if not os.path.exists(os.path.join(a.smol_awq, "config.json")):
            run([a.awq, "quantize", a.smol_source, a.smol_awq, "--w-bit", "4",
                 "--q-group-size", "64"], capture=False)
    return files


# --- the runs ---------------------------------------------------------------------------------

def memory(a):
    out = run([a.awq, "bench", "--memory-only", "--json"],
              env={"AWQ_NUM_THREADS": str(max(a.threads))})
    j = json.loads(out)
    return {"read": j["read_gb_per_s"], "triad": j["triad_gb_per_s"]}


def llama_bench(a, path):
    """llama-bench's prefill (-p, from an empty context) and decode (-n) at each thread count. With
    --llama-depth D > 0 the decode runs as a separate call at depth D (-d: D positions already in
    the KV cache), so its steps read the cache that awq bench's decode after its prompt reads."""
    exe, threads = os.path.join(a.llama_bin, "llama-bench"), ",".join(map(str, a.threads))
    common = ["-m", path, "-t", threads, "-r", "1", "-o", "json"]
    if a.llama_depth > 0:
        tests = json.loads(run([exe, *common, "-p", str(a.prompt), "-n", "0"]))
        tests += json.loads(run([exe, *common, "-p", "0", "-n", str(a.gen),
                                 "-d", str(a.llama_depth)]))
    else:
        tests = json.loads(run([exe, *common, "-p", str(a.prompt), "-n", str(a.gen)]))
    best = {"prefill": (0.0, 0), "decode": (0.0, 0)}
    by_threads = []
    commit = None
    for t in tests:
        phase = "prefill" if t["n_prompt"] > 0 else "decode"
        by_threads.append({"phase": phase, "threads": t["n_threads"], "tok_s": t["avg_ts"]})
        if t["avg_ts"] > best[phase][0]:
            best[phase] = (t["avg_ts"], t["n_threads"])
        commit = t.get("build_commit")
    return {"prefill": best["prefill"][0], "prefill_threads": best["prefill"][1],
            "decode": best["decode"][0], "decode_threads": best["decode"][1],
            "by_threads": by_threads, "build_commit": commit}


def awq_bench(a, target, kernel):
    """awq bench at every thread count of --threads (as llama-bench's -t), the best per phase."""
    args = ["--synthetic", "llama2-7b", "--layers", "8"] if target == "7b" else [a.smol_awq]
    res = {"prefill": 0.0, "decode": 0.0, "by_threads": []}
    for threads in a.threads:
        env = {"AWQ_NUM_THREADS": str(threads)}
        if kernel != "auto":
            env["AWQ_INT4_KERNEL"] = kernel
        memory = ["--token-paired-read"] if a.token_paired else ["--no-memory"]
        out = run([a.awq, "bench", *args, "--prompt-tokens", str(a.prompt), "--gen-tokens",
                   str(a.gen), "--reps", "1", "--warmup", *memory, "--json"], env=env)
        j = json.loads(out)
        r = j["results"][0]
        res.update(weight_bytes=r["weight_bytes_per_token"],
                   kv_bytes=r["kv_cache_bytes_per_token"], kernels=j.get("int4_kernel", "?"))
        for phase, value in (("prefill", r["prefill_tokens_per_s"]),
                             ("decode", r["decode_tokens_per_s"])):
            res["by_threads"].append({"phase": phase, "threads": threads, "tok_s": value})
            if value > res[phase]:
                res[phase], res[phase + "_threads"] = value, threads
                if phase == "decode" and "decode_token_share_of_read" in r:
                    res["token_share"] = r["decode_token_share_of_read"]
                    res["token_share_with_kv"] = r["decode_token_share_of_read_with_kv"]
    return res


def median(v):
    return statistics.median(v) if v else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="llama-bench thread counts (best is taken)")
    ap.add_argument("--only", default="7b,smol", help="subjects: 7b, smol or both")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--llama-depth", type=int, default=None,
                    help="KV cache positions before llama.cpp's decode (llama-bench -d); default "
                         "--prompt, as awq bench decodes after its prompt; 0: llama-bench's tg "
                         "from an empty context")
    ap.add_argument("--no-token-paired", dest="token_paired", action="store_false",
                    help="skip awq bench's --token-paired-read (a read pass over each decode "
                         "step's weight bytes right after it)")
    ap.add_argument("--awq", default=os.path.join(ROOT, "build-bench", "awq"))
    ap.add_argument("--llama-bin", default=os.path.join(ROOT, "assets/peers/llama.cpp-build/bin"))
    ap.add_argument("--llama-src", default=os.path.join(ROOT, "assets/peers/llama.cpp-src"))
    ap.add_argument("--cache", default=os.path.join(ROOT, "out/peers"))
    ap.add_argument("--smol-f32",
                    default=os.path.join(ROOT, "out/llamacpp_reference/smollm2/smollm2.F32.gguf"))
    ap.add_argument("--smol-awq", default=os.path.join(ROOT, "out/peers/smol-awq-w4g64"))
    ap.add_argument("--smol-source",
                    default=os.path.join(ROOT, "assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--llama-types", default="Q4_0,Q4_K_M",
                    help="llama.cpp types on the 7B shapes (Q4_0 is the ratios' baseline)")
    ap.add_argument("--awq-kernels", default="auto",
                    help="AWQ_INT4_KERNEL values to run awq.cpp under, one row each (auto: "
                         "unset), e.g. auto,avx2-int8,avx512-int8 to measure a host's choice")
    ap.add_argument("--python", help="interpreter with numpy, for writing the 7B-shaped GGUF")
    ap.add_argument("--json", default=os.path.join(ROOT, "out/peers/results.json"))
    a = ap.parse_args()
    a.threads = [int(t) for t in a.threads.split(",")]
    if a.llama_depth is None:
        a.llama_depth = a.prompt
    a.only = a.only.split(",")
    a.awq_kernels = a.awq_kernels.split(",")
    if not os.path.exists(a.awq):
        raise SystemExit(f"{a.awq}: missing; build it (cmake --build build-bench --target awq) "
                         "or pass --awq")

    files = prepare(a)
    # (key, model label, engine label, how to run it)
    subjects = []
    def awq_subjects(target, model, engine):
        return [(f"{target}/awq" + ("" if k == "auto" else f"/{k}"), model,
                 engine + ("" if k == "auto" else f", {k}"),
                 lambda k=k: awq_bench(a, target, k)) for k in a.awq_kernels]

    if "7b" in a.only:
        model = "Llama-2-7B shapes, 8 layers"
        subjects += [(f"7b/llama/{qt}", model, f"llama.cpp {qt}",
                      lambda qt=qt: llama_bench(a, files[f"7b/{qt}"]))
                     for qt in a.llama_types.split(",")]
        subjects += awq_subjects("7b", model, "awq.cpp int4 g128")
    if "smol" in a.only:
        subjects += [("smol/llama/Q4_0", "SmolLM2-135M", "llama.cpp Q4_0",
                      lambda: llama_bench(a, files["smol/Q4_0"]))]
        subjects += awq_subjects("smol", "SmolLM2-135M", "awq.cpp AWQ w4 g64")
    # llama-bench's tg decodes from an empty context: on average (gen + 1) / 2 cached positions.
    llama_bytes = {k: llama_decode_bytes(files[k.replace("/llama", "")],
                                         a.llama_depth + (a.gen + 1) / 2)
                   for k, *_ in subjects if "/llama/" in k}

    host = {"cpu": cpu_model(), "loadavg_start": os.getloadavg(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "awq_commit": git_commit()}
    log(f"host: {host['cpu']}, load average {host['loadavg_start']}")
    runs = {k: [] for k, *_ in subjects}
    before = memory(a)
    t_start = time.time()
    for r in range(a.rounds):
        order = subjects if r % 2 == 0 else subjects[::-1]
        for key, _, _, fn in order:
            res = fn()
            after = memory(a)
            res["read"] = max(before["read"], after["read"])
            res["triad"] = max(before["triad"], after["triad"])
            res["loadavg"] = os.getloadavg()[0]
            before = after
            runs[key].append(res)
            log(f"round {r + 1}/{a.rounds} {key}: prefill {res['prefill']:.1f}, decode "
                f"{res['decode']:.2f} tok/s, read {res['read']:.1f} GB/s")
    host["loadavg_end"] = os.getloadavg()
    host["minutes"] = (time.time() - t_start) / 60

    rows = []
    for key, model, engine, _ in subjects:
        rs = runs[key]
        wb, kvb = ((rs[0]["weight_bytes"], rs[0]["kv_bytes"]) if "weight_bytes" in rs[0]
                   else llama_bytes[key])
        gbs = [wb * x["decode"] / 1e9 for x in rs]
        all_gbs = [(wb + kvb) * x["decode"] / 1e9 for x in rs]
        row = {"key": key, "model": model, "engine": engine, "weight_bytes_per_token": wb,
               "kv_bytes_per_token": kvb,
               "prefill_tok_s": median([x["prefill"] for x in rs]),
               "decode_tok_s": median([x["decode"] for x in rs]),
               "decode_gb_s": median(gbs),
               "share_of_read": median([g / x["read"] for g, x in zip(gbs, rs)]),
               "share_of_triad": median([g / x["triad"] for g, x in zip(gbs, rs)]),
               "share_of_read_with_kv": median([g / x["read"] for g, x in zip(all_gbs, rs)]),
               "runs": rs}
        if all("token_share" in x for x in rs):
            row["token_share"] = median([x["token_share"] for x in rs])
            row["token_share_with_kv"] = median([x["token_share_with_kv"] for x in rs])
        # The count that won most rounds.
        row["threads"] = "/".join(str(statistics.mode([x[p + "_threads"] for x in rs]))
                                  for p in ("prefill", "decode"))
        if "kernels" in rs[0]:
            row["kernels"] = rs[0]["kernels"]
        base = key.split("/")[0] + "/llama/Q4_0"
        if "/awq" in key and base in runs:
            row["prefill_ratio"] = median([x["prefill"] / y["prefill"]
                                           for x, y in zip(rs, runs[base])])
            row["decode_ratio"] = median([x["decode"] / y["decode"]
                                          for x, y in zip(rs, runs[base])])
        rows.append(row)
    reads = [x["read"] for k in runs for x in runs[k]]
    triads = [x["triad"] for k in runs for x in runs[k]]
    llama_commit = next((x.get("build_commit") for k in runs for x in runs[k]
                         if x.get("build_commit")), "?")

    print(f"host: {host['cpu']}")
    print(f"awq.cpp {host['awq_commit']}, llama.cpp {llama_commit}; {a.rounds} interleaved rounds, "
          f"{host['minutes']:.0f} min; load average {host['loadavg_start'][0]:.2f} at start, "
          f"{host['loadavg_end'][0]:.2f} at end")
    print(f"memory (awq bench --memory-only, {max(a.threads)} threads, around every run): read "
          f"{median(reads):.1f} GB/s ({min(reads):.1f}-{max(reads):.1f}), triad "
          f"{median(triads):.1f} GB/s ({min(triads):.1f}-{max(triads):.1f})")
    print()
    hdr = ("| model | engine | threads (prefill/decode) | prefill tok/s | decode tok/s | "
           "MB/token weights + KV | weight GB/s | of read: weights (+ KV) | "
           "token-paired read: weights (+ KV) | awq/llama.cpp Q4_0 prefill | decode |")
    print(hdr)
    print("|" + "---|" * hdr.count(" | ") + "---|")
    for row in rows:
        ratio = (f"{row['prefill_ratio']:.2f}x | {row['decode_ratio']:.2f}x"
                 if "prefill_ratio" in row else " | ")
        paired = (f"{100 * row['token_share']:.0f}% ({100 * row['token_share_with_kv']:.0f}%)"
                  if "token_share" in row else "")
        print(f"| {row['model']} | {row['engine']} | {row['threads']} | "
              f"{row['prefill_tok_s']:.1f} | {row['decode_tok_s']:.2f} | "
              f"{row['weight_bytes_per_token'] / 1e6:.1f} + {row['kv_bytes_per_token'] / 1e6:.1f} | "
              f"{row['decode_gb_s']:.2f} | {100 * row['share_of_read']:.0f}% "
              f"({100 * row['share_of_read_with_kv']:.0f}%) | {paired} | {ratio} |")
    print()
    for row in rows:
        if "kernels" in row:
            print(f"{row['engine']} on {row['model']}: {row['kernels']}")
    print(f"(-p {a.prompt} -n {a.gen}; medians over rounds; ratios: median of the same round's "
          "ratios; each engine: its best of threads " + ",".join(map(str, a.threads)) +
          " per round and phase; of read: decode weight GB/s over the read loop's GB/s measured just "
          f"before/after the run, the better of the two; (+ KV): counting the f16 KV cache each decode "
          f"step reads too: awq.cpp decodes after its {a.prompt}-token prompt, llama-bench's tg "
          + (f"at depth {a.llama_depth} (-d)" if a.llama_depth > 0 else "from an empty context") +
          "; token-paired read (awq.cpp only): each decode step's GB/s over "
          "that of one pass of the read loop over the same bytes right after it, median over the "
          "steps)")
    os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
    with open(a.json, "w") as f:
        json.dump({"host": host, "llama_commit": llama_commit, "rounds": a.rounds,
                   "llama_depth": a.llama_depth,
                   "threads": a.threads, "prompt": a.prompt, "gen": a.gen,
                   "memory": {"read_median": median(reads), "read_runs": reads,
                              "triad_median": median(triads), "triad_runs": triads},
                   "rows": rows}, f, indent=1)
    log(f"wrote {a.json}")


if __name__ == "__main__":
    main()
