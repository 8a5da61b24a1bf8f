#!/usr/bin/env python3
"""Reference ("golden") model outputs for the C++ engine: tests/data/smollm2_golden.bin + .json.

The reference is transformers' own Llama implementation running the GGUF model in fp32:
  AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=torch.float32)
transformers dequantizes every tensor (Q4_1 linears, Q8_0 token embedding) to fp32 and undoes
llama.cpp's q/k row permutation itself, so the outputs are those of the exact dequantized
weights, computed in fp32 on the CPU.

Tokenizer. AutoTokenizer.from_pretrained(dir, gguf_file=name) converts vocabulary, merges and
control tokens faithfully, but ignores tokenizer.ggml.pre = "smollm" and installs a plain GPT-2
ByteLevel pre-tokenizer. llama.cpp's "smollm" pre-tokenizer (and SmolLM2's own tokenizer.json)
isolates every \\p{N} character first. The two differ on whitespace runs before digits
("   1" -> [ĠĠĠ, 1] versus [ĠĠ, Ġ, 1]). So, like tools/make_tokenizer_golden.py, the reference
tokenizer is the converted one with its pre-tokenizer replaced by
Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)].
The script also checks every id it stores against an independent pure-Python llama.cpp-style
byte-level BPE built straight from the GGUF's tokens/merges, and reports how many ids the
unpatched conversion gets wrong on prideprejudice.txt.

What it writes (format: docs/GOLDEN.md):
  1. logits facts for 6 prompts, at every position: argmax, logsumexp, max, min, the 16 top
     (id, logit) pairs and the logits at 64 fixed vocab ids;
  2. 32 greedy-generated ids for 2 prompts (the chat prompt and "def fibonacci(n):\\n";
     model.generate, do_sample=False, EOS not stopping), with the top1-top2 logit margin of
     every step;
  3. perplexity of prideprejudice.txt with fresh-context, non-overlapping windows:
     (a) N=32768 ctx=2048, (b) N=4096 ctx=2048, (c) N=2048 ctx=512, plus the first 32768 token
     ids, their FNV-1a 64 hash and the token count of the whole text.

Usage: python3 tools/make_model_golden.py [--model PATH] [--text-dir DIR] [--out PATH.bin]
                                          [--json PATH.json] [--threads 2] [--quick]
       python3 tools/make_model_golden.py --verify [--out PATH.bin --json PATH.json]
  --verify only re-reads the fixture (no model needed) and checks it against the JSON summary.
  --quick skips the 32768-token perplexity (a) (for trying the script out; it then refuses to
  overwrite the committed fixture unless --out/--json are given).
Runs in about 10 minutes on 2 cores, deterministically (same inputs, same thread count ->
same bytes, apart from the "created" timestamp which is not stored).
"""
import argparse
import copy
import hashlib
import importlib.metadata as md
import json
import math
import os
import platform
import struct
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(REPO, "assets", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_TEXT_DIR = os.path.join(REPO, "assets", "text")
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "smollm2_golden.bin")
DEFAULT_JSON = os.path.join(REPO, "tests", "data", "smollm2_golden.json")

MAGIC = b"AWQGOLD1"
VERSION = 1

N_TOP = 16
# 64 fixed vocab ids: 0..31 (the 17 special tokens and the first byte tokens) and 32 ids spread
# over the vocabulary, ending at the last id 49151.
FIXED_IDS = list(range(32)) + [1535 + 1536 * i for i in range(32)]

CHAT_PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
PROMPTS = [
    ("plain", "The quick brown fox jumps over the lazy dog. Later that day, the farmer counted "
              "his sheep and found that none were missing."),
    ("austen", "It is a truth universally acknowledged, that a single man in possession of a "
               "good fortune, must be in want of a wife."),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n"
             "    for _ in range(n):\n        a, b = b, a + b\n    return a\n"),
    ("digits", "Order #40213 shipped on 2024-03-15 at 09:45; total: $1,299.99 (incl. 7.5% tax).\n\n"
               "  3.14159 + 2.71828 = 5.85987 !? [1]  (2)   {3}"),
    ("chat", CHAT_PROMPT),
    ("emma", None),  # the first 3 paragraphs of Emma, Chapter I (filled in from emma.txt)
]
# Greedy prompts, picked for a comfortable top1-top2 logit margin at all 32 steps (>= 0.05; e.g.
# the "austen" prompt has a 0.0006 near-tie at one step, too close for an fp32 re-implementation).
GEN_PROMPTS = [("chat", CHAT_PROMPT), ("code_def", "def fibonacci(n):\n")]
N_GEN = 32

PPL_TEXT = "prideprejudice"
PPL_CONFIGS = [("a", 32768, 2048), ("b", 4096, 2048), ("c", 2048, 512)]
HASH_TOKENS = 32768
N_FIRST = 16

# ----------------------------------------------------------------------------------------------
# Little helpers


def log(msg):
    print(msg, flush=True)


def fnv1a64_ids(ids):
    """FNV-1a 64 over the ids written as little-endian int32 bytes."""
    h = 0xCBF29CE484222325
    for b in struct.pack("<%di" % len(ids), *ids):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_text(path):
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


class Writer:
    """Little-endian section writer (layout documented in docs/GOLDEN.md)."""

    def __init__(self):
        self.sections = []

    def section(self, tag, payload):
        assert len(tag) == 4
        self.sections.append((tag.encode("ascii"), bytes(payload)))

    def tobytes(self):
        out = bytearray(MAGIC)
        out += struct.pack("<II", VERSION, len(self.sections))
        for tag, payload in self.sections:
            out += tag + struct.pack("<IQ", 0, len(payload)) + payload
        return bytes(out)


class Payload(bytearray):
    def u32(self, v):
        self += struct.pack("<I", v)
        return self

    def u64(self, v):
        self += struct.pack("<Q", v)
        return self

    def f64(self, v):
        self += struct.pack("<d", v)
        return self

    def str(self, s):
        b = s.encode("utf-8")
        self += struct.pack("<I", len(b)) + b
        return self

    def arr(self, a, dtype):
        import numpy as np
        a = np.ascontiguousarray(np.asarray(a, dtype=dtype))
        self += a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        return self


# ----------------------------------------------------------------------------------------------
# Independent llama.cpp-style byte-level BPE (tokenizer.ggml.model = gpt2, pre = smollm), used
# only to cross-check the transformers tokenizer.


class ReferenceBPE:
    GPT2_SPLIT = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")

    def __init__(self, gguf_path):
        import gguf
        import regex
        r = gguf.GGUFReader(gguf_path)
        tokens = r.fields["tokenizer.ggml.tokens"].contents()
        types = r.fields["tokenizer.ggml.token_type"].contents()
        merges = r.fields["tokenizer.ggml.merges"].contents()
        assert r.fields["tokenizer.ggml.model"].contents() == "gpt2"
        assert r.fields["tokenizer.ggml.pre"].contents() == "smollm"
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ", 1)): i for i, m in enumerate(merges)}
        # Control (3) and user-defined (4) tokens are matched whole in the text, longest first.
        specials = sorted((t for t, ty in zip(tokens, types) if ty in (3, 4)), key=len,
                          reverse=True)
        self.special_re = regex.compile("(" + "|".join(regex.escape(s) for s in specials) + ")")
        self.specials = set(specials)
        self.digit_re = regex.compile(r"(\p{N})")
        self.split_re = regex.compile(self.GPT2_SPLIT)
        bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
              + list(range(ord("®"), ord("ÿ") + 1)))
        cs = bs[:]
        n = 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        self.byte_char = {b: chr(c) for b, c in zip(bs, cs)}
        self.cache = {}

    def _bpe(self, word):
        syms = [self.byte_char[b] for b in word.encode("utf-8")]
        while len(syms) > 1:
            best, best_i = None, -1
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best):
                    best, best_i = r, i
            if best is None:
                break
            syms[best_i:best_i + 2] = [syms[best_i] + syms[best_i + 1]]
        return [self.vocab[s] for s in syms]

    def encode(self, text):
        ids = []
        for part in self.special_re.split(text):
            if not part:
                continue
            if part in self.specials:
                ids.append(self.vocab[part])
                continue
            for frag in self.digit_re.split(part):
                if not frag:
                    continue
                for word in self.split_re.findall(frag):
                    got = self.cache.get(word)
                    if got is None:
                        got = self.cache[word] = self._bpe(word)
                    ids.extend(got)
        return ids


# ----------------------------------------------------------------------------------------------
# Reader (the same layout a C++ test parses), used by --verify and after writing.


class Reader:
    def __init__(self, buf):
        self.b, self.o = memoryview(buf), 0

    def take(self, n):
        if self.o + n > len(self.b):
            raise ValueError(f"truncated: need {n} bytes at {self.o}")
        v = self.b[self.o:self.o + n]
        self.o += n
        return v

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def f64(self):
        return struct.unpack("<d", self.take(8))[0]

    def str(self):
        return bytes(self.take(self.u32())).decode("utf-8")

    def arr(self, dtype, n):
        import numpy as np
        dt = np.dtype(dtype).newbyteorder("<")
        return np.frombuffer(bytes(self.take(dt.itemsize * n)), dtype=dt)


def read_golden(path):
    """Parses the fixture into {tag: [section dicts]}; raises on any malformation."""
    with open(path, "rb") as f:
        r = Reader(f.read())
    if bytes(r.take(8)) != MAGIC:
        raise ValueError("bad magic")
    version, n_sections = r.u32(), r.u32()
    if version != VERSION:
        raise ValueError(f"unsupported version {version}")
    out = {}
    for _ in range(n_sections):
        tag = bytes(r.take(4)).decode("ascii")
        if r.u32() != 0:
            raise ValueError("reserved field not 0")
        size = r.u64()
        s = Reader(r.take(size))
        d = {}
        if tag == "META":
            d = dict((s.str(), s.str()) for _ in range(s.u32()))
        elif tag == "PRMT":
            d["name"], d["text"] = s.str(), s.str()
            t = s.u32()
            d["ids"] = s.arr("i4", t)
            k, nf = s.u32(), s.u32()
            d["fixed_ids"] = s.arr("i4", nf)
            d["argmax"], d["lse"] = s.arr("i4", t), s.arr("f4", t)
            d["max"], d["min"] = s.arr("f4", t), s.arr("f4", t)
            d["top_ids"] = s.arr("i4", t * k).reshape(t, k)
            d["top_logits"] = s.arr("f4", t * k).reshape(t, k)
            d["fixed_logits"] = s.arr("f4", t * nf).reshape(t, nf)
        elif tag == "GENR":
            d["name"], d["text"] = s.str(), s.str()
            d["prompt_ids"] = s.arr("i4", s.u32())
            g = s.u32()
            d["generated_ids"], d["margins"] = s.arr("i4", g), s.arr("f4", g)
        elif tag == "TOKS":
            d["text_file"], d["text_sha256"] = s.str(), s.str()
            d["text_bytes"], d["n_tokens_whole_text"] = s.u64(), s.u64()
            h = s.u32()
            d["fnv1a64"] = s.u64()
            d["first"] = s.arr("i4", s.u32())
            d["ids"] = s.arr("i4", h)
        elif tag == "PPLX":
            d["label"], d["text_file"] = s.str(), s.str()
            d["n_tokens"], d["ctx"], nw = s.u32(), s.u32(), s.u32()
            d["perplexity"], d["total_nll"], d["n_predicted"] = s.f64(), s.f64(), s.u64()
            d["window_nll_sums"] = s.arr("f8", nw)
            d["token_nll"] = s.arr("f4", s.u32())
        else:
            d["raw"] = bytes(s.take(size))
        if s.o != size:
            raise ValueError(f"section {tag}: {size - s.o} bytes left over")
        out.setdefault(tag, []).append(d)
    if r.o != len(r.b):
        raise ValueError("trailing bytes after the last section")
    return out


def verify(bin_path, json_path):
    """Re-reads the fixture and checks it against the JSON summary and itself."""
    import numpy as np
    g = read_golden(bin_path)
    with open(json_path, encoding="utf-8") as f:
        js = json.load(f)
    meta = g["META"][0]
    assert meta["gguf_sha256"] == js["gguf_sha256"]
    for d, j in zip(g["PRMT"], js["prompts"], strict=True):
        assert d["name"] == j["name"] and d["ids"].tolist() == j["ids"]
        assert d["argmax"].tolist() == j["argmax"] == d["top_ids"][:, 0].tolist()
        assert np.all(d["top_logits"][:, 0] == d["max"])
        assert np.all(np.diff(d["top_logits"], axis=1) <= 0)
        assert np.all(d["lse"] >= d["max"]) and np.all(d["min"] <= d["fixed_logits"].min(1))
        assert d["fixed_ids"].tolist() == FIXED_IDS
    for d, j in zip(g["GENR"], js["generations"], strict=True):
        assert d["generated_ids"].tolist() == j["generated_ids"]
    t = g["TOKS"][0]
    assert fnv1a64_ids(t["ids"].tolist()) == t["fnv1a64"]
    assert f"{t['fnv1a64']:016x}" == js["tokens"]["fnv1a64_first_32768"]
    assert t["first"].tolist() == t["ids"][:len(t["first"])].tolist()
    for d, j in zip(g["PPLX"], js["perplexity"], strict=True):
        assert d["label"] == j["label"] and d["perplexity"] == j["perplexity"]
        assert d["n_predicted"] == d["n_tokens"] - d["n_tokens"] // d["ctx"]
        assert math.isclose(math.exp(d["total_nll"] / d["n_predicted"]), d["perplexity"],
                            rel_tol=1e-12)
        assert math.isclose(float(d["window_nll_sums"].sum()), d["total_nll"], rel_tol=1e-12)
        if len(d["token_nll"]):
            assert math.isclose(float(d["token_nll"].astype(np.float64).sum()), d["total_nll"],
                                rel_tol=1e-5)
    log(f"verified {bin_path}: " + ", ".join(f"{k} x{len(v)}" for k, v in g.items())
        + "; perplexities " + ", ".join(f"({d['label']}) {d['perplexity']:.6g}"
                                         for d in g["PPLX"]))


# ----------------------------------------------------------------------------------------------


def logit_facts(logits, fixed_ids):
    """Per-position facts from a [T, V] fp32 logits tensor (reductions done in float64)."""
    import numpy as np
    import torch
    lg = logits.detach().to(torch.float32)
    lse = torch.logsumexp(lg.double(), dim=-1).numpy()
    a = lg.numpy()
    # Stable descending order: ties broken by the lower id.
    order = np.argsort(-a, axis=-1, kind="stable")[:, :N_TOP]
    top_vals = np.take_along_axis(a, order, axis=-1)
    return {
        "argmax": order[:, 0].astype(np.int32),
        "lse": lse.astype(np.float32),
        "max": a.max(axis=-1).astype(np.float32),
        "min": a.min(axis=-1).astype(np.float32),
        "top_ids": order.astype(np.int32),
        "top_logits": top_vals.astype(np.float32),
        "fixed_logits": a[:, fixed_ids].astype(np.float32),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--text-dir", default=DEFAULT_TEXT_DIR)
    ap.add_argument("--out", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="skip the 32768-token perplexity (a)")
    ap.add_argument("--verify", action="store_true",
                    help="only re-read --out/--json (default: the committed fixture) and check")
    args = ap.parse_args()
    if args.verify:
        return verify(args.out or DEFAULT_OUT, args.json or DEFAULT_JSON)
    if args.quick and (args.out is None or args.json is None):
        ap.error("--quick needs explicit --out and --json (it must not overwrite the fixture)")
    out_bin = args.out or DEFAULT_OUT
    out_json = args.json or DEFAULT_JSON

    t_start = time.time()
    import numpy as np
    import torch
    import transformers
    from tokenizers import pre_tokenizers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    transformers.logging.set_verbosity_error()
    try:
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)

    model_dir, model_name = os.path.split(os.path.abspath(args.model))
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gguf": md.version("gguf"),
        "tokenizers": md.version("tokenizers"),
        "numpy": np.__version__,
    }
    log(f"versions: {versions}")
    log(f"hashing {args.model}")
    gguf_sha = sha256_file(args.model)
    log(f"  sha256 {gguf_sha}")

    # --- tokenizer ------------------------------------------------------------------------------
    log("loading tokenizer (transformers GGUF conversion)")
    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_name)
    converted_pre = str(tok.backend_tokenizer.pre_tokenizer)
    plain_tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_name)  # left unpatched
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    log(f"  converted pre-tokenizer: {converted_pre}")
    log("  replaced by Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)]"
        " (llama.cpp 'smollm')")
    probe = tok("Hello world").input_ids
    probe_nospecial = tok("Hello world", add_special_tokens=False).input_ids
    tok_info = {
        "class": type(tok).__name__,
        "len": len(tok),
        "bos_token": tok.bos_token, "bos_token_id": tok.bos_token_id,
        "eos_token": tok.eos_token, "eos_token_id": tok.eos_token_id,
        "add_bos_token": bool(getattr(tok, "add_bos_token", False)),
        "add_eos_token": bool(getattr(tok, "add_eos_token", False)),
        "default_adds_special_tokens": probe != probe_nospecial,
        "hello_world_ids": probe,
        "converted_pre_tokenizer": converted_pre,
        "reference_pre_tokenizer": "Sequence[Digits(individual_digits=True), "
                                   "ByteLevel(add_prefix_space=False, use_regex=True)]",
    }
    log(f"  'Hello world' -> {probe} (add_special_tokens default adds "
        f"{'something' if tok_info['default_adds_special_tokens'] else 'nothing'}; "
        f"add_bos_token={tok_info['add_bos_token']})")
    assert not tok_info["default_adds_special_tokens"], "expected no BOS (add_bos_token False)"

    log("building the independent reference BPE from the GGUF vocabulary/merges")
    ref_bpe = ReferenceBPE(args.model)

    def encode(text, what):
        ids = tok(text).input_ids
        ref = ref_bpe.encode(text)
        if ids != ref:
            i = next((k for k, (x, y) in enumerate(zip(ids, ref)) if x != y), min(len(ids), len(ref)))
            raise SystemExit(f"tokenizer mismatch on {what} at id {i}: transformers "
                             f"{ids[i:i + 8]} vs reference BPE {ref[i:i + 8]}")
        return ids

    # --- prompts ---------------------------------------------------------------------------------
    emma = read_text(os.path.join(args.text_dir, "emma.txt"))
    start = emma.index("Emma Woodhouse, handsome, clever, and rich")
    paragraphs = emma[start:].split("\n\n")
    emma_passage = "\n\n".join(paragraphs[:3])
    prompts = [(n, t if t is not None else emma_passage) for n, t in PROMPTS]
    prompt_ids = {}
    for name, text in prompts:
        prompt_ids[name] = encode(text, f"prompt {name}")
        plain_ids = plain_tok(text).input_ids
        log(f"  prompt {name}: {len(prompt_ids[name])} tokens"
            + ("" if plain_ids == prompt_ids[name] else
               f" (the unpatched conversion differs: {len(plain_ids)} tokens)"))

    # --- model -----------------------------------------------------------------------------------
    log(f"loading model {model_name} (fp32)")
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=model_name,
                                                 dtype=torch.float32)
    model.eval()
    attn = model.config._attn_implementation
    log(f"  {type(model).__name__}, dtype {model.dtype}, attention {attn}, "
        f"{sum(p.numel() for p in model.parameters())} parameters, "
        f"tied lm_head {model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()}"
        f", loaded in {time.time() - t0:.1f}s")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32
    assert attn in ("eager", "sdpa")
    assert model.config.vocab_size == 49152
    assert all(p.dtype == torch.float32 for p in model.parameters())
    model_info = {
        "class": type(model).__name__, "dtype": "float32", "attn_implementation": attn,
        "num_hidden_layers": model.config.num_hidden_layers,
        "hidden_size": model.config.hidden_size,
        "num_attention_heads": model.config.num_attention_heads,
        "num_key_value_heads": model.config.num_key_value_heads,
        "intermediate_size": model.config.intermediate_size,
        "vocab_size": model.config.vocab_size,
        "rms_norm_eps": model.config.rms_norm_eps,
        "rope_theta": float(model.config.rope_parameters["rope_theta"]),
        "tie_word_embeddings": bool(model.config.tie_word_embeddings),
    }
    model64 = copy.deepcopy(model).double()

    def forward(ids, m=model):
        with torch.no_grad():
            x = torch.tensor([ids], dtype=torch.long)
            return m(input_ids=x, use_cache=False).logits[0]

    w = Writer()
    summary = {
        "generator": "tools/make_model_golden.py", "format": "docs/GOLDEN.md",
        "magic": MAGIC.decode(), "version": VERSION,
        "model_file": model_name, "gguf_sha256": gguf_sha, "versions": versions,
        "torch_threads": args.threads, "tokenizer": tok_info, "model": model_info,
        "fixed_ids": FIXED_IDS, "prompts": [], "generations": [], "perplexity": [],
    }

    # --- 1. logits -------------------------------------------------------------------------------
    log("1. logits of the prompts")
    for name, text in prompts:
        ids = prompt_ids[name]
        t0 = time.time()
        lg = forward(ids)
        f = logit_facts(lg, FIXED_IDS)
        lg64 = forward(ids, model64)
        diff64 = float((lg.double() - lg64).abs().max())
        lse64 = torch.logsumexp(lg64, dim=-1).numpy()
        p = Payload()
        p.str(name).str(text).u32(len(ids)).arr(ids, np.int32)
        p.u32(N_TOP).u32(len(FIXED_IDS)).arr(FIXED_IDS, np.int32)
        p.arr(f["argmax"], np.int32).arr(f["lse"], np.float32)
        p.arr(f["max"], np.float32).arr(f["min"], np.float32)
        p.arr(f["top_ids"], np.int32).arr(f["top_logits"], np.float32)
        p.arr(f["fixed_logits"], np.float32)
        w.section("PRMT", p)
        margin = f["top_logits"][:, 0] - f["top_logits"][:, 1]
        summary["prompts"].append({
            "name": name, "text": text, "n_tokens": len(ids), "ids": ids,
            "tokens": tok.convert_ids_to_tokens(ids),
            "argmax": f["argmax"].tolist(),
            "logsumexp_first_last": [float(f["lse"][0]), float(f["lse"][-1])],
            "max_logit_range": [float(f["max"].min()), float(f["max"].max())],
            "min_logit_range": [float(f["min"].min()), float(f["min"].max())],
            "min_top1_top2_margin": float(margin.min()),
            "max_abs_diff_fp32_vs_fp64_logits": diff64,
            "max_abs_diff_fp32_vs_fp64_logsumexp": float(np.abs(f["lse"] - lse64).max()),
        })
        log(f"  {name}: {len(ids)} positions, next-token argmax after prompt "
            f"{int(f['argmax'][-1])} {tok.convert_ids_to_tokens([int(f['argmax'][-1])])}, "
            f"|fp32-fp64| logits <= {diff64:.2e}, min margin {float(margin.min()):.3g} "
            f"({time.time() - t0:.1f}s)")
    del model64

    # --- 2. greedy generation --------------------------------------------------------------------
    log("2. greedy generation")
    for name, gen_text in GEN_PROMPTS:
        ids = encode(gen_text, f"generation prompt {name}")
        t0 = time.time()
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                 dtype=torch.long), do_sample=False, max_new_tokens=N_GEN,
                                 min_new_tokens=0, eos_token_id=None, pad_token_id=2,
                                 num_beams=1, repetition_penalty=None, temperature=None,
                                 top_p=None, top_k=None)
        gen = out[0, len(ids):].tolist()
        assert len(gen) == N_GEN, gen
        # Re-check without the KV cache: one full forward of prompt+generated ids.
        lg = forward(ids + gen)[len(ids) - 1:len(ids) - 1 + N_GEN]
        top2 = torch.topk(lg, 2, dim=-1)
        recomputed = top2.indices[:, 0].tolist()
        margins = (top2.values[:, 0] - top2.values[:, 1]).numpy().astype(np.float32)
        if recomputed != gen:
            raise SystemExit(f"generate() and full-forward argmax disagree for {name}: "
                             f"{gen} vs {recomputed}")
        p = Payload()
        p.str(name).str(gen_text)
        p.u32(len(ids)).arr(ids, np.int32).u32(N_GEN).arr(gen, np.int32).arr(margins, np.float32)
        w.section("GENR", p)
        text = tok.decode(gen)
        summary["generations"].append({
            "prompt": name, "prompt_text": gen_text, "prompt_ids": ids, "generated_ids": gen,
            "generated_text": text,
            "eos_generated_at": [i for i, t in enumerate(gen) if t == 2],
            "top1_top2_margins": [round(float(m), 5) for m in margins],
            "min_margin": float(margins.min()),
        })
        log(f"  {name}: {gen}\n    -> {text!r}\n    min top1-top2 margin {margins.min():.4f} "
            f"({time.time() - t0:.1f}s)")

    # --- 3. perplexity ---------------------------------------------------------------------------
    log(f"3. perplexity on {PPL_TEXT}.txt")
    text_path = os.path.join(args.text_dir, PPL_TEXT + ".txt")
    text = read_text(text_path)
    t0 = time.time()
    all_ids = tok(text).input_ids
    log(f"  tokenized {len(text)} chars -> {len(all_ids)} tokens in {time.time() - t0:.1f}s")
    t0 = time.time()
    ref_ids = ref_bpe.encode(text)
    if ref_ids != all_ids:
        raise SystemExit("reference BPE disagrees with transformers on the perplexity text")
    log(f"  independent reference BPE agrees on all {len(all_ids)} ids ({time.time() - t0:.1f}s)")
    plain_ids = plain_tok(text).input_ids
    n_cmp = min(len(plain_ids), len(all_ids))
    first_diff = next((i for i in range(n_cmp) if plain_ids[i] != all_ids[i]), None)
    plain_info = {"n_tokens": len(plain_ids), "first_differing_index": first_diff}
    log(f"  unpatched transformers conversion: {len(plain_ids)} tokens, first difference at "
        f"index {first_diff}")
    assert len(all_ids) >= HASH_TOKENS
    head = all_ids[:HASH_TOKENS]
    fnv = fnv1a64_ids(head)
    log(f"  FNV-1a 64 of the first {HASH_TOKENS} ids: {fnv:016x}; first {N_FIRST}: "
        f"{all_ids[:N_FIRST]}")
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    p = Payload()
    p.str(PPL_TEXT + ".txt").str(text_sha).u64(len(text.encode("utf-8"))).u64(len(all_ids))
    p.u32(HASH_TOKENS).u64(fnv).u32(N_FIRST).arr(all_ids[:N_FIRST], np.int32)
    p.arr(head, np.int32)
    w.section("TOKS", p)
    summary["tokens"] = {
        "text_file": PPL_TEXT + ".txt", "text_sha256": text_sha,
        "text_bytes": len(text.encode("utf-8")), "text_chars": len(text),
        "n_tokens_whole_text": len(all_ids), "n_hashed": HASH_TOKENS,
        "fnv1a64_first_32768": f"{fnv:016x}", "first_16_ids": all_ids[:N_FIRST],
        "special_tokens_added": False, "unpatched_conversion": plain_info,
    }

    window_cache = {}

    def window_nll(ids):
        """NLL (float64) of tokens 1..len-1 of ids given their prefix, fresh context."""
        key = tuple(ids)
        if key not in window_cache:
            lg = forward(list(ids))
            tgt = torch.tensor(ids[1:], dtype=torch.long)
            nll = torch.empty(len(ids) - 1, dtype=torch.float64)
            for s in range(0, len(ids) - 1, 256):
                e = min(s + 256, len(ids) - 1)
                rows = lg[s:e].double()
                nll[s:e] = torch.logsumexp(rows, dim=-1) - rows.gather(1, tgt[s:e, None])[:, 0]
            window_cache[key] = nll.numpy()
        return window_cache[key]

    # (a) first so that (b), whose windows are (a)'s first two, reuses them.
    configs = [c for c in PPL_CONFIGS if not (args.quick and c[0] == "a")]
    results = {}
    for label, n_tok, ctx in configs:
        t0 = time.time()
        assert n_tok % ctx == 0
        nlls = []
        for w_i in range(n_tok // ctx):
            tw = time.time()
            nll = window_nll(all_ids[w_i * ctx:(w_i + 1) * ctx])
            nlls.append(nll)
            log(f"    ({label}) window {w_i + 1}/{n_tok // ctx}: nll/token "
                f"{nll.mean():.5f} ({time.time() - tw:.1f}s)")
        win_sums = [float(x.sum()) for x in nlls]
        total = float(np.concatenate(nlls).sum())
        count = sum(len(x) for x in nlls)
        ppl = math.exp(total / count)
        dt = time.time() - t0
        log(f"  ({label}) N={n_tok} ctx={ctx}: {count} predicted tokens, total NLL {total:.6f}, "
            f"perplexity {ppl:.6g} ({dt:.1f}s)")
        results[label] = ppl
        per_token = np.concatenate(nlls).astype(np.float32) if label == "c" else np.zeros(0)
        p = Payload()
        p.str(label).str(PPL_TEXT + ".txt").u32(n_tok).u32(ctx).u32(n_tok // ctx)
        p.f64(ppl).f64(total).u64(count).arr(win_sums, np.float64)
        p.u32(len(per_token)).arr(per_token, np.float32)
        w.section("PPLX", p)
        summary["perplexity"].append({
            "label": label, "text_file": PPL_TEXT + ".txt", "n_tokens": n_tok, "ctx": ctx,
            "n_windows": n_tok // ctx, "n_predicted": count, "total_nll": total,
            "perplexity": ppl, "perplexity_6sig": f"{ppl:.6g}", "window_nll_sums": win_sums,
            "per_token_nll_stored": len(per_token) > 0, "seconds": round(dt, 1),
        })

    # --- metadata and output ---------------------------------------------------------------------
    meta = [("generator", "tools/make_model_golden.py"), ("model_file", model_name),
            ("gguf_sha256", gguf_sha)]
    meta += [(f"version.{k}", v) for k, v in versions.items()]
    meta += [("model_class", type(model).__name__), ("dtype", "float32"),
             ("attn_implementation", attn), ("torch_threads", str(args.threads)),
             ("tokenizer", "transformers GGUF conversion, pre-tokenizer replaced by "
                           "Digits(individual_digits)+ByteLevel (llama.cpp smollm)"),
             ("add_bos", "false")]
    p = Payload().u32(len(meta))
    for k, v in meta:
        p.str(k).str(v)
    w.sections.insert(0, (b"META", bytes(p)))

    blob = w.tobytes()
    os.makedirs(os.path.dirname(out_bin), exist_ok=True)
    with open(out_bin, "wb") as f:
        f.write(blob)
    summary["bin_file"] = os.path.basename(out_bin)
    summary["bin_bytes"] = len(blob)
    summary["bin_sha256"] = hashlib.sha256(blob).hexdigest()
    summary["sections"] = [t.decode() for t, _ in w.sections]
    summary["runtime_seconds"] = round(time.time() - t_start, 1)
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(summary, f, ensure_ascii=False, indent=1)
        f.write("\n")
    log(f"wrote {out_bin} ({len(blob)} bytes, sha256 {summary['bin_sha256'][:16]}...) and "
        f"{out_json}")
    verify(out_bin, out_json)
    log("perplexities: " + ", ".join(f"({k}) {v:.6g}" for k, v in results.items()))
    log(f"total {time.time() - t_start:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
