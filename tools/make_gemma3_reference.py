#!/usr/bin/env python3
"""Full-precision reference outputs of Gemma-3-270M: tests/data/gemma3_270m_golden.json.

The model is transformers' Gemma3ForCausalLM (text only) in float32, eager attention, whose
weights are the tensors of assets/models/gemma-3-270m-q4_k_m.gguf dequantized with
gguf.quants.dequantize (Q4_K, Q5_0, Q6_K, Q8_0 -> fp32), mapped from llama.cpp names to
Hugging Face names. llama.cpp's converter adds 1 to every Gemma RMSNorm weight (Hugging Face
stores w and applies (1 + w)), so 1 is subtracted from every *norm.weight. Gemma's q/k rows are
not permuted by the converter, so they are used as stored. The configuration is built from the
GGUF metadata (gemma3.*) plus what llama.cpp hard-codes for Gemma 3: local RoPE base 10000,
every 6th layer global (full attention), query_pre_attn_scalar = 256 for this size, tied
embeddings. The mapping is cross-checked against transformers' own GGUF loader
(from_pretrained(gguf_file=...)), which must give the same logits.

Tokenizer: the sentencepiece library with a ModelProto rebuilt from the GGUF's tokens, scores
and token types (BPE model, byte fallback, identity normalizer, no dummy prefix, no removal of
extra whitespace, spaces escaped to U+2581). Two undo-steps restore the original
tokenizer.model: llama.cpp's converter wrote user-defined whitespace pieces with plain spaces
("  ") instead of "\u2581\u2581", and marked <unk> as a control token; the rebuild puts "\u2581" back
and gives <unk> the UNKNOWN type. transformers' GGUF tokenizer conversion is not used (for
gemma3 it splits words into single characters).

Text protocol (mirrors `awq eval --ppl`: src/cli/cmd_eval.cc, src/eval/perplexity.cc): the file's
bytes are read as they are (no newline translation), the whole text is encoded once with the
model's special-token rule (tokenizer.ggml.add_bos_token = true, add_eos_token = false: one
<bos> = 2 before the first text token, nothing after), control-token spellings in the text are
plain text. The first N ids of that stream are cut into N/ctx non-overlapping windows, each run
from an empty context; so only the first window starts with <bos>. NLL is summed over
positions 0..ctx-2 of each window; perplexity = exp(total / (N - N/ctx)).

Writes (format: docs/GOLDEN.md, "Gemma-3-270M reference"):
  * perplexity for (N=32768, ctx=2048), (4096, 2048), (2048, 512), per-window NLL sums, the
    per-token NLLs of the (2048, 512) case; token count of the text, FNV-1a 64 of the first
    32768 ids of the stream, the first 4096 ids;
  * for 3 prompts (<bos> + text; the chat prompt's control tokens parsed): at every position
    argmax, logsumexp, top-8 ids and logits, plus the fp32-vs-fp64 logits difference;
  * a 16-token greedy continuation of one prompt (full forward per step, EOS not stopping);
  * the GGUF's SHA-256, the text's SHA-256, library versions, thread count, timings.

Usage: python3 tools/make_gemma3_reference.py [--model PATH] [--text PATH] [--out PATH]
                                              [--threads 2] [--quick]
  --quick skips the 32768-token perplexity (and then refuses to overwrite the committed file
  unless --out is given). The full run takes about 15-25 minutes on 2 cores.
"""
import argparse
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
DEFAULT_MODEL = os.path.join(REPO, "assets", "models", "gemma-3-270m-q4_k_m.gguf")
DEFAULT_TEXT = os.path.join(REPO, "assets", "text", "prideprejudice.txt")
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "gemma3_270m_golden.json")

HASH_TOKENS = 32768
STORED_IDS = 4096
TOP_K = 8
GREEDY_STEPS = 16
LOGIT_ROWS = 256  # rows of 262144 logits computed at once (256 MiB in fp32)
PPL_CASES = [("a", 32768, 2048), ("b", 4096, 2048), ("c", 2048, 512)]

PROMPTS = [
    ("plain", "The capital of France is Paris, and the capital of Germany is", False),
    ("austen", "It is a truth universally acknowledged, that a single man in possession of "
               "a good fortune, must be in want of a wife.", False),
    ("chat", "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
             "<start_of_turn>model\n", True),
]
GREEDY_PROMPT = "plain"

# llama.cpp tensor name (after "blk.N.") -> Hugging Face name (after "model.layers.N.")
LAYER_MAP = {
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "ffn_norm.weight": "pre_feedforward_layernorm.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
GLOBAL_MAP = {"token_embd.weight": "model.embed_tokens.weight",
              "output_norm.weight": "model.norm.weight"}


def log(msg):
    print(msg, flush=True)


def fnv1a64_ids(ids):
    """FNV-1a 64 over the ids written as little-endian int32 bytes (as make_model_golden.py)."""
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


def versions():
    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "gguf", "sentencepiece", "protobuf", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


# ----------------------------------------------------------------------------------------------
# Tokenizer: sentencepiece ModelProto rebuilt from tokenizer.ggml.*


def spm_proto_from_gguf(reader):
    """A sentencepiece ModelProto equivalent to the tokenizer.model the GGUF was made from."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    assert field(reader, "tokenizer.ggml.model") == "llama", "not a sentencepiece vocabulary"
    tokens = field(reader, "tokenizer.ggml.tokens")
    scores = field(reader, "tokenizer.ggml.scores")
    types = field(reader, "tokenizer.ggml.token_type")
    unk = field(reader, "tokenizer.ggml.unknown_token_id", 0)
    proto = pb.ModelProto()
    seen = set()
    for i, (tok, score, ty) in enumerate(zip(tokens, scores, types)):
        if ty == 4:  # user-defined: llama.cpp stored spaces pre-normalized; undo
            tok = tok.replace(" ", "\u2581")
        if i == unk:
            ty = 2  # llama.cpp marks every "special" added token CONTROL, <unk> included
        assert tok not in seen, f"duplicate piece {tok!r}"
        seen.add(tok)
        p = proto.pieces.add()
        p.piece, p.score, p.type = tok, float(score), int(ty)
    ts = proto.trainer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = len(tokens)
    ts.byte_fallback = any(t == 6 for t in types)
    ts.unk_id = unk
    ts.bos_id = field(reader, "tokenizer.ggml.bos_token_id", -1)
    ts.eos_id = field(reader, "tokenizer.ggml.eos_token_id", -1)
    ts.pad_id = field(reader, "tokenizer.ggml.padding_token_id", -1)
    ns = proto.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = bool(field(reader, "tokenizer.ggml.add_space_prefix", True))
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    return proto


class GemmaTokenizer:
    def __init__(self, reader):
        import sentencepiece as spm

        proto = spm_proto_from_gguf(reader)
        self.sp = spm.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(proto.SerializeToString())
        assert self.sp.vocab_size() == len(proto.pieces)
        tokens = field(reader, "tokenizer.ggml.tokens")
        types = field(reader, "tokenizer.ggml.token_type")
        self.control = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 3}
        self.bos = field(reader, "tokenizer.ggml.bos_token_id")
        self.eos = field(reader, "tokenizer.ggml.eos_token_id")
        self.add_bos = bool(field(reader, "tokenizer.ggml.add_bos_token", False))
        self.add_eos = bool(field(reader, "tokenizer.ggml.add_eos_token", False))

    def _plain(self, text):
        return list(self.sp.EncodeAsIds(text)) if text else []

    def encode(self, text, add_special=True, parse_special=False):
        """Mirror of awq::Tokenizer::Encode: [bos] + ids (+ [eos]) by the GGUF's add_* flags;
        with parse_special, control-token spellings in the text become their ids."""
        ids = [self.bos] if (add_special and self.add_bos) else []
        if parse_special:
            names = sorted(self.control, key=len, reverse=True)
            pos = start = 0
            while pos < len(text):
                hit = next((n for n in names if text.startswith(n, pos)), None) \
                    if text[pos] == "<" else None
                if hit is None:
                    pos += 1
                    continue
                ids += self._plain(text[start:pos]) + [self.control[hit]]
                pos = start = pos + len(hit)
            ids += self._plain(text[start:])
        else:
            ids += self._plain(text)
        if add_special and self.add_eos:
            ids.append(self.eos)
        return ids

    def piece(self, i):
        return self.sp.IdToPiece(i)


# ----------------------------------------------------------------------------------------------
# Model


def build_config(reader):
    from transformers import Gemma3TextConfig

    arch = field(reader, "general.architecture")
    assert arch == "gemma3", arch
    g = lambda k, d=None: field(reader, f"gemma3.{k}", d)  # noqa: E731
    n_layers = int(g("block_count"))
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    head_dim = int(g("attention.key_length"))
    assert int(g("attention.value_length", head_dim)) == head_dim
    pattern = 6  # llama.cpp: every 6th layer global (LLM_ARCH_GEMMA3 swa pattern)
    cfg = Gemma3TextConfig(
        vocab_size=n_vocab,
        hidden_size=int(g("embedding_length")),
        intermediate_size=int(g("feed_forward_length")),
        num_hidden_layers=n_layers,
        num_attention_heads=int(g("attention.head_count")),
        num_key_value_heads=int(g("attention.head_count_kv")),
        head_dim=head_dim,
        max_position_embeddings=int(g("context_length")),
        rms_norm_eps=float(g("attention.layer_norm_rms_epsilon")),
        rope_theta=float(g("rope.freq_base")),
        rope_local_base_freq=10000.0,
        sliding_window=int(g("attention.sliding_window")),
        layer_types=["sliding_attention" if (i + 1) % pattern else "full_attention"
                     for i in range(n_layers)],
        query_pre_attn_scalar=256,
        hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True,
        final_logit_softcapping=g("final_logit_softcapping"),
        attn_logit_softcapping=g("attn_logit_softcapping"),
        bos_token_id=field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=field(reader, "tokenizer.ggml.padding_token_id"),
    )
    cfg._attn_implementation = "eager"
    return cfg


def load_state_dict(reader):
    import numpy as np
    import torch
    from gguf.quants import dequantize

    sd, quant_types = {}, {}
    for t in reader.tensors:
        name = t.name
        if name in GLOBAL_MAP:
            hf = GLOBAL_MAP[name]
        else:
            parts = name.split(".", 2)
            assert parts[0] == "blk" and parts[2] in LAYER_MAP, f"unmapped tensor {name}"
            hf = f"model.layers.{int(parts[1])}.{LAYER_MAP[parts[2]]}"
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        expect = tuple(int(d) for d in reversed(t.shape.tolist()))
        w = w.reshape(expect) if w.ndim == 1 or len(expect) == 1 else w
        assert w.shape == expect, (name, w.shape, expect)
        if hf.endswith("norm.weight"):
            w = w - np.float32(1.0)  # llama.cpp's converter stored 1 + w
        sd[hf] = torch.from_numpy(np.ascontiguousarray(w))
        quant_types[t.tensor_type.name] = quant_types.get(t.tensor_type.name, 0) + 1
    return sd, quant_types


def build_model(reader, dtype):
    import torch
    from transformers import Gemma3ForCausalLM

    cfg = build_config(reader)
    sd, qtypes = load_state_dict(reader)
    torch.manual_seed(0)  # the random init is overwritten by load_state_dict
    model = Gemma3ForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert set(missing) <= {"lm_head.weight"}, missing
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model = model.to(dtype).eval()
    return model, cfg, qtypes


# ----------------------------------------------------------------------------------------------
# Evaluation


def window_nll(model, ids, want_tokens=False):
    """NLL sum of ids[1:] given their prefix (one window from an empty context), fp64 reductions."""
    import torch

    x = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        h = model.model(input_ids=x, use_cache=False).last_hidden_state[0]
        soft = model.config.final_logit_softcapping
        total, per_tok = 0.0, []
        n = len(ids) - 1
        for r0 in range(0, n, LOGIT_ROWS):
            r1 = min(n, r0 + LOGIT_ROWS)
            logits = model.lm_head(h[r0:r1])
            if soft is not None:
                logits = torch.tanh(logits / soft) * soft
            lg = logits.double()
            tgt = torch.tensor(ids[r0 + 1:r1 + 1], dtype=torch.long)
            nll = torch.logsumexp(lg, dim=-1) - lg.gather(1, tgt[:, None])[:, 0]
            total += float(nll.sum())
            if want_tokens:
                per_tok += nll.tolist()
    return total, per_tok


def perplexity(model, stream, n, ctx, label, want_tokens=False, bos_each_window=None):
    """bos_each_window: an id that replaces the first token of every window (diagnostic)."""
    assert len(stream) >= n, f"text has {len(stream)} tokens, need {n}"
    w = n // ctx
    sums, toks = [], []
    t0 = time.time()
    for k in range(w):
        win = list(stream[k * ctx:(k + 1) * ctx])
        if bos_each_window is not None:
            win[0] = bos_each_window
        s, per = window_nll(model, win, want_tokens)
        sums.append(s)
        toks += per
        el = time.time() - t0
        log(f"  ppl {label}: window {k + 1}/{w} nll {s:.4f} "
            f"({el:.0f}s, ~{el / (k + 1) * (w - k - 1):.0f}s left)")
    total = math.fsum(sums)
    n_pred = n - w
    out = {"label": label, "n_tokens": n, "ctx": ctx, "n_windows": w,
           "perplexity": math.exp(total / n_pred), "nll_sum": total, "n_predicted": n_pred,
           "window_nll_sums": sums, "seconds": round(time.time() - t0, 1)}
    if want_tokens:
        out["token_nlls"] = [float("%.7g" % v) for v in toks]
    return out


def logits_facts(model, ids):
    import torch

    with torch.no_grad():
        lg = model(torch.tensor([ids]), use_cache=False).logits[0].float()
    lgd = lg.double()
    # Top-k with ties broken by the lower id: sort by (-value, id).
    vals, idx = torch.sort(lg, dim=-1, descending=True, stable=True)
    return lg, {
        "argmax": vals.new_tensor(idx[:, 0].tolist()).long().tolist(),
        "logsumexp": [round(float(v), 6) for v in torch.logsumexp(lgd, dim=-1)],
        "max": [round(float(v), 6) for v in lg.max(dim=-1).values],
        "top_ids": idx[:, :TOP_K].tolist(),
        "top_logits": [[round(float(v), 6) for v in row] for row in vals[:, :TOP_K]],
        "min_top1_top2_margin": round(float((vals[:, 0] - vals[:, 1]).min()), 6),
    }


def greedy(model, ids, steps):
    import torch

    seq, out, margins = list(ids), [], []
    with torch.no_grad():
        for _ in range(steps):
            lg = model(torch.tensor([seq]), use_cache=False).logits[0, -1]
            v, i = torch.sort(lg, descending=True, stable=True)
            out.append(int(i[0]))
            margins.append(round(float(v[0] - v[1]), 6))
            seq.append(int(i[0]))
    return out, margins


def cross_check_with_transformers_loader(model_path, model, prompt_ids):
    """transformers' own GGUF loader (dequantization, norm -1) must give the same logits."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        ref = AutoModelForCausalLM.from_pretrained(
            os.path.dirname(model_path), gguf_file=os.path.basename(model_path),
            dtype=torch.float32, attn_implementation="eager").eval()
    except Exception as e:  # noqa: BLE001
        return {"ok": None, "error": f"{type(e).__name__}: {e}"[:300]}
    info = {"class": type(ref).__name__,
            "query_pre_attn_scalar": ref.config.query_pre_attn_scalar,
            "layer_types_equal": list(ref.config.layer_types) == list(model.config.layer_types),
            "sliding_window": ref.config.sliding_window}
    with torch.no_grad():
        a = model(torch.tensor([prompt_ids]), use_cache=False).logits
        b = ref(torch.tensor([prompt_ids]), use_cache=False).logits
    info["max_abs_logit_diff"] = float((a - b).abs().max())
    info["ok"] = info["max_abs_logit_diff"] < 1e-3
    del ref
    return info


def check_against_spm_golden(model_path, text, stream_text_ids):
    """When tools/make_spm_golden.py (the tokenizer fixture's script) is present, its own
    ModelProto rebuild must encode the text to the same ids. Returns a note for the log."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        from make_spm_golden import build_processor, read_gguf
    except ImportError as e:
        return f"tools/make_spm_golden.py not usable ({e}); not cross-checked"
    other = build_processor(read_gguf(model_path)).EncodeAsIds(text)
    if list(other) != list(stream_text_ids):
        sys.exit("tokenizer disagrees with tools/make_spm_golden.py's build_processor")
    return f"identical to tools/make_spm_golden.py's build_processor ({len(other)} ids)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--text", default=DEFAULT_TEXT)
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="skip the 32768-token perplexity")
    ap.add_argument("--no-cross-check", action="store_true",
                    help="skip the comparison with transformers' GGUF loader")
    args = ap.parse_args()
    if args.out is None:
        if args.quick:
            sys.exit("--quick needs an explicit --out (it would drop the 32k perplexity)")
        args.out = DEFAULT_OUT

    import gguf
    import torch

    torch.set_num_threads(args.threads)
    t_start = time.time()
    reader = gguf.GGUFReader(args.model)
    tok = GemmaTokenizer(reader)
    log(f"tokenizer: {tok.sp.vocab_size()} pieces, add_bos={tok.add_bos} add_eos={tok.add_eos}")

    with open(args.text, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")
    t0 = time.time()
    stream = tok.encode(text, add_special=True, parse_special=False)
    log(f"text: {len(raw)} bytes -> {len(stream)} tokens in {time.time() - t0:.1f}s; "
        f"first: {[tok.piece(i) for i in stream[:12]]}")

    text_ids = stream[1:] if tok.add_bos else stream
    text_ids = text_ids[:-1] if tok.add_eos else text_ids
    log("tokenizer cross-check: " + check_against_spm_golden(args.model, text, text_ids))

    model, cfg, qtypes = build_model(reader, torch.float32)
    log(f"model: {sum(p.numel() for p in model.parameters())} parameters, "
        f"layer types {cfg.layer_types}, rope {cfg.rope_parameters}")

    prompts = []
    for name, ptext, special in PROMPTS:
        ids = tok.encode(ptext, add_special=True, parse_special=special)
        lg, facts = logits_facts(model, ids)
        prompts.append({"name": name, "text": ptext, "parse_special": special, "ids": ids,
                        "pieces": [tok.piece(i) for i in ids], **facts, "_lg": lg})
        log(f"prompt {name}: {len(ids)} tokens, next-token argmax "
            f"{facts['argmax'][-1]} {tok.piece(facts['argmax'][-1])!r}")

    cross = None
    if not args.no_cross_check:
        cross = cross_check_with_transformers_loader(args.model, model, prompts[1]["ids"])
        log(f"cross-check with transformers' GGUF loader: {cross}")
        if cross.get("ok") is False:
            sys.exit("weight mapping disagrees with transformers' GGUF loader")

    # fp32-vs-fp64 noise on the prompts
    model64 = build_model(reader, torch.float64)[0]
    for p in prompts:
        with torch.no_grad():
            l64 = model64(torch.tensor([p["ids"]]), use_cache=False).logits[0]
        p["max_abs_diff_fp32_vs_fp64_logits"] = float("%.3g" % float(
            (p.pop("_lg").double() - l64).abs().max()))
    del model64

    gp = next(p for p in prompts if p["name"] == GREEDY_PROMPT)
    gen, margins = greedy(model, gp["ids"], GREEDY_STEPS)
    log(f"greedy: {tok.sp.DecodeIds(gen)!r}")

    cases = [c for c in PPL_CASES if not (args.quick and c[1] == HASH_TOKENS)]
    ppl = []
    for label, n, ctx in reversed(cases):
        r = perplexity(model, stream, n, ctx, label, want_tokens=(label == "c"))
        log(f"ppl {label} (N={n}, ctx={ctx}): {r['perplexity']:.6f}")
        ppl.append(r)
    ppl.sort(key=lambda r: r["label"])
    # Diagnostic, not the C++ protocol: every window's first token replaced by <bos> (as
    # llama.cpp's llama-perplexity does); Gemma is sensitive to a missing <bos>.
    ppl_bos = []
    for label, n, ctx in PPL_CASES[1:]:
        r = perplexity(model, stream, n, ctx, label + "_bos", bos_each_window=tok.bos)
        log(f"ppl {label}_bos (N={n}, ctx={ctx}, <bos> first in every window): "
            f"{r['perplexity']:.6f}")
        ppl_bos.append(r)

    head = stream[:HASH_TOKENS]
    out = {
        "generator": "tools/make_gemma3_reference.py",
        "model_file": os.path.basename(args.model),
        "gguf_sha256": sha256_file(args.model),
        "gguf_tensor_types": qtypes,
        "versions": versions(),
        "torch_threads": args.threads,
        "dtype": "float32",
        "attn_implementation": "eager",
        "model_class": "Gemma3ForCausalLM",
        "config": {
            "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads, "head_dim": cfg.head_dim,
            "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
            "rms_norm_eps": cfg.rms_norm_eps, "sliding_window": cfg.sliding_window,
            "layer_types": list(cfg.layer_types), "rope_parameters": cfg.rope_parameters,
            "max_position_embeddings": cfg.max_position_embeddings,
            "hidden_activation": cfg.hidden_activation,
            "final_logit_softcapping": cfg.final_logit_softcapping,
            "attn_logit_softcapping": cfg.attn_logit_softcapping,
            "tie_word_embeddings": True,
            "embed_scale": "sqrt(hidden_size), applied to the embedding rows",
            "norm_weights": "GGUF value - 1 (HF stores w, applies 1 + w)",
        },
        "tokenizer": {
            "kind": "sentencepiece BPE, ModelProto rebuilt from tokenizer.ggml.*",
            "bos_id": tok.bos, "eos_id": tok.eos, "add_bos": tok.add_bos,
            "add_eos": tok.add_eos,
        },
        "weight_cross_check": cross,
        "prompts": prompts,
        "greedy": {"prompt": GREEDY_PROMPT, "prompt_ids": gp["ids"], "steps": GREEDY_STEPS,
                   "eos_stops": False, "ids": gen, "text": tok.sp.DecodeIds(gen),
                   "top1_top2_margins": margins},
        "text": {
            "file": os.path.basename(args.text), "sha256": hashlib.sha256(raw).hexdigest(),
            "bytes": len(raw),
            "protocol": "bytes read as-is; one <bos> before the whole text, no <eos>; "
                        "windows cut from that stream, each from an empty context",
            "n_tokens": len(stream), "n_tokens_hashed": len(head),
            "fnv1a64_first_32768": f"{fnv1a64_ids(head):016x}",
            "first_ids": stream[:STORED_IDS],
        },
        "perplexity": ppl,
        "perplexity_bos_each_window": ppl_bos,
        "seconds_total": round(time.time() - t_start, 1),
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    log(f"wrote {args.out} in {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
