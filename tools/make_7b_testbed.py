#!/usr/bin/env python3
"""A Hugging Face folder with random bf16 weights in a real 7B model's shapes, for benchmarks.

Shapes: Llama-2-7B, Qwen2.5-7B, and Mixtral-8x7B (a mixture of 8 experts, top 2).

Writes OUT/ with
  config.json, generation_config.json   the real model's keys (Llama-2-7b-hf, Qwen2.5-7B-Instruct)
  model-0000i-of-0000n.safetensors      bf16, shards of at most --max-shard-gb (5 GB as
  model.safetensors.index.json          save_pretrained); one model.safetensors when it fits
  tokenizer files                       copied with --tokenizer-from DIR (awq needs a tokenizer)
  calib_ids.jsonl                       pre-tokenized calibration samples, {"input_ids": [...]}

The weights are seeded noise: linears and embeddings ~ N(0, 0.02^2), norms 1 + N(0, 0.02^2),
q/k/v biases ~ N(0, 0.01^2). So that AWQ's scale search has something to find, 1% of the hidden
channels are outliers: their input_layernorm and post_attention_layernorm weights are multiplied
by a factor drawn from [10, 50] per layer and norm (the same channels in every layer, as real
models' outlier dimensions are), and 1% of each layer's up_proj rows likewise, which makes the
matching down_proj input channels large.

Each tensor is drawn from its own generator, seeded by (--seed, tensor name), in chunks of
CHUNK elements, converted to bf16 and written straight to the shard, so memory stays at a few
hundred MB whatever the model size, and --layers N gives exactly the first N layers of the full
model. The safetensors files are written by hand (8-byte little-endian header length, JSON header
padded with spaces to 8 bytes, raw data): numpy has no bf16, and the `safetensors` package would
need a whole shard in memory; it is only used, when present, to read the result back.

Usage:
  python3 tools/make_7b_testbed.py --arch llama2-7b --out /tmp/llama2-7b-random \
      [--tokenizer-from DIR] [--calib-text FILE] [--calib-samples 128] [--calib-len 512] \
      [--layers N] [--seed 0] [--max-shard-gb 5] [--force]
"""
import argparse
import json
import os
import resource
import shutil
import sys
import time
import zlib

import numpy as np

CHUNK = 1 << 23  # elements generated at once: 32 MiB of float32, plus as much for the bf16 step
LINEAR_STD = 0.02  # linears, embeddings, lm_head (the usual initializer_range)
NORM_NOISE_STD = 0.02  # RMSNorm weights: 1 + noise
BIAS_STD = 0.01  # Qwen2's q/k/v biases
OUTLIER_FRACTION = 0.01  # of the hidden channels (norm weights) and of the up_proj rows
OUTLIER_SCALE = (10.0, 50.0)  # the outlier factor, drawn uniformly per layer and tensor
OUTLIER_STREAM, CALIB_STREAM = 0x0071, 0xCA11B  # generator keys besides the tensor names' CRCs
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# The real config.json of each model, as published (keys checked against transformers'
# LlamaConfig / Qwen2Config; the legacy "rope_theta" and "torch_dtype" keys, which transformers 5
# still reads, as awq does). Differences: torch_dtype is bfloat16 for both, since the weights
# are (Llama-2-7b-hf says float16), and Llama's rope_theta, absent there, is written out.
ARCHS = {
    "llama2-7b": {  # meta-llama/Llama-2-7b-hf
        "architectures": ["LlamaForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "initializer_range": 0.02,
        "intermediate_size": 11008,
        "max_position_embeddings": 4096,
        "model_type": "llama",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 32,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": 32000,
    },
    "qwen2.5-7b": {  # Qwen/Qwen2.5-7B-Instruct
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "hidden_act": "silu",
        "hidden_size": 3584,
        "initializer_range": 0.02,
        "intermediate_size": 18944,
        "max_position_embeddings": 32768,
        "max_window_layers": 28,
        "model_type": "qwen2",
        "num_attention_heads": 28,
        "num_hidden_layers": 28,
        "num_key_value_heads": 4,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 152064,
    },
    "mixtral-8x7b": {  # mistralai/Mixtral-8x7B-v0.1
        "architectures": ["MixtralForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "initializer_range": 0.02,
        "intermediate_size": 14336,
        "max_position_embeddings": 32768,
        "model_type": "mixtral",
        "num_attention_heads": 32,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "num_local_experts": 8,
        "output_router_logits": False,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.02,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": 32000,
    },
}


def tensor_plan(cfg):
    """[(name, shape, kind)] in the order transformers' state_dict lists them.

    kind: "linear" (N(0, LINEAR_STD^2)), "bias", "norm", "outlier_norm", "outlier_up".
    """
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    qkv_bias = cfg["model_type"] == "qwen2"  # Qwen2 always has q/k/v biases
    plan = [("model.embed_tokens.weight", (v, h), "linear")]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        plan.append((p + "input_layernorm.weight", (h,), "outlier_norm"))
        for proj, rows in (("q", heads * hd), ("k", kv * hd), ("v", kv * hd)):
            plan.append((p + f"self_attn.{proj}_proj.weight", (rows, h), "linear"))
            if qkv_bias:
                plan.append((p + f"self_attn.{proj}_proj.bias", (rows,), "bias"))
        plan.append((p + "self_attn.o_proj.weight", (h, heads * hd), "linear"))
        plan.append((p + "post_attention_layernorm.weight", (h,), "outlier_norm"))
        if "num_local_experts" in cfg:
            # Mixtral: a router and num_local_experts experts w1 (gate), w3 (up), w2 (down).
            moe = p + "block_sparse_moe."
            plan.append((moe + "gate.weight", (cfg["num_local_experts"], h), "linear"))
            for e in range(cfg["num_local_experts"]):
                plan.append((moe + f"experts.{e}.w1.weight", (inter, h), "linear"))
                plan.append((moe + f"experts.{e}.w2.weight", (h, inter), "linear"))
                plan.append((moe + f"experts.{e}.w3.weight", (inter, h), "outlier_up"))
            continue
        plan.append((p + "mlp.gate_proj.weight", (inter, h), "linear"))
        plan.append((p + "mlp.up_proj.weight", (inter, h), "outlier_up"))
        plan.append((p + "mlp.down_proj.weight", (h, inter), "linear"))
    plan.append(("model.norm.weight", (h,), "norm"))
    plan.append(("lm_head.weight", (v, h), "linear"))
    return plan


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def rng_for(seed, name):
    """A generator of its own per tensor, so a tensor does not depend on what came before."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def outlier_channels(seed, n):
    """The hidden channels that are outliers in every layer: a fixed seeded choice."""
    k = max(1, round(n * OUTLIER_FRACTION))
    return np.sort(np.random.default_rng([seed, OUTLIER_STREAM]).choice(n, k, replace=False))


def to_bf16(x):
    """float32 -> bf16 bits (uint16), round to nearest even: add 0x7FFF plus the lowest kept bit,
    keep the upper 16 bits. Only finite values come here, so no NaN handling is needed."""
    u = x.view(np.uint32)
    lsb = u >> 16
    lsb &= 1
    lsb += 0x7FFF
    u += lsb
    u >>= 16
    return u.astype("<u2")


def write_tensor(f, seed, name, shape, kind, hot_channels):
    """Generates `name` chunk by chunk and writes its bf16 bytes to f."""
    rng = rng_for(seed, name)
    if kind in ("norm", "outlier_norm"):
        w = 1.0 + NORM_NOISE_STD * rng.standard_normal(shape[0], dtype=np.float32)
        if kind == "outlier_norm":
            w[hot_channels] *= rng.uniform(*OUTLIER_SCALE, size=len(hot_channels)).astype(np.float32)
        f.write(to_bf16(w.astype(np.float32)).tobytes())
        return
    std = np.float32(BIAS_STD if kind == "bias" else LINEAR_STD)
    rows = shape[0]
    row_len = numel(shape[1:])
    row_scale = None
    if kind == "outlier_up":
        # Own generator for the choice, so the weights below are the same stream as a plain linear.
        pick = np.random.default_rng([seed, zlib.crc32(name.encode()), 1])
        k = max(1, round(rows * OUTLIER_FRACTION))
        row_scale = np.ones(rows, np.float32)
        row_scale[pick.choice(rows, k, replace=False)] = pick.uniform(*OUTLIER_SCALE, size=k)
    rows_per_chunk = max(1, CHUNK // row_len)
    buf = np.empty(rows_per_chunk * row_len, np.float32)
    for r0 in range(0, rows, rows_per_chunk):
        r1 = min(rows, r0 + rows_per_chunk)
        x = buf[: (r1 - r0) * row_len]
        rng.standard_normal(out=x, dtype=np.float32)
        x *= std
        if row_scale is not None:
            x.reshape(r1 - r0, row_len)[...] *= row_scale[r0:r1, None]
        f.write(to_bf16(x).tobytes())


def plan_shards(plan, max_shard_bytes):
    """Greedy as save_pretrained: start a new shard when the next tensor would overflow this one."""
    shards, cur, cur_bytes = [], [], 0
    for t in plan:
        nbytes = numel(t[1]) * 2
        if cur and cur_bytes + nbytes > max_shard_bytes:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(t)
        cur_bytes += nbytes
    if cur:
        shards.append(cur)
    return shards


def safetensors_header(tensors):
    """The JSON header of a safetensors file with `tensors` stored in order, padded to 8 bytes."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in tensors:
        nbytes = numel(shape) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw, offset


def write_calib_ids(path, args, vocab):
    """calib_ids.jsonl: --calib-samples lines of exactly --calib-len ids in [0, vocab)."""
    rng = np.random.default_rng([args.seed, CALIB_STREAM])
    if args.calib_text:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(os.path.join(args.tokenizer_from, "tokenizer.json"))
        with open(args.calib_text, encoding="utf-8") as f:
            text = f.read()
        ids = np.asarray(tok.encode(text, add_special_tokens=False).ids, np.int64) % vocab
        if len(ids) < args.calib_len:
            sys.exit(f"error: --calib-text {args.calib_text}: {len(ids)} tokens, fewer than "
                     f"--calib-len {args.calib_len}")
        # Windows at seeded random offsets, so the samples spread over the whole text.
        starts = rng.integers(0, len(ids) - args.calib_len + 1, size=args.calib_samples)
        samples = [ids[s : s + args.calib_len] for s in starts]
        source = f"{args.calib_text} ({len(ids)} tokens, windows at seeded offsets)"
    else:
        samples = [rng.integers(0, vocab, size=args.calib_len) for _ in range(args.calib_samples)]
        source = "seeded uniform random ids"
    with open(path, "w") as f:
        for s in samples:
            f.write(json.dumps({"input_ids": [int(i) for i in s]}) + "\n")
    return source


def inside_repo(path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.abspath(path)
    return path == repo or path.startswith(repo + os.sep)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", required=True, choices=sorted(ARCHS))
    ap.add_argument("--out", required=True, help="output folder (put it under /tmp: ~15 GB)")
    ap.add_argument("--layers", type=int, default=None,
                    help="number of decoder layers (default: the real model's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-shard-gb", type=float, default=5.0,
                    help="largest shard in 10^9 bytes, as save_pretrained's max_shard_size")
    ap.add_argument("--tokenizer-from", metavar="DIR",
                    help="copy tokenizer.json, tokenizer_config.json, special_tokens_map.json")
    ap.add_argument("--calib-text", metavar="FILE",
                    help="draw calib_ids.jsonl from this text (needs --tokenizer-from)")
    ap.add_argument("--calib-samples", type=int, default=128)
    ap.add_argument("--calib-len", type=int, default=512)
    ap.add_argument("--force", action="store_true",
                    help="replace the safetensors files of an earlier run in --out")
    ap.add_argument("--allow-in-repo", action="store_true",
                    help="allow a folder over 2 GB inside the repository")
    args = ap.parse_args()

    cfg = dict(ARCHS[args.arch])
    if args.layers is not None:
        if not 1 <= args.layers <= cfg["num_hidden_layers"]:
            ap.error(f"--layers must be in [1, {cfg['num_hidden_layers']}], got {args.layers}")
        cfg["num_hidden_layers"] = args.layers
    if args.calib_text and not args.tokenizer_from:
        ap.error("--calib-text needs --tokenizer-from DIR to tokenize it")
    if args.calib_samples < 1 or args.calib_len < 1:
        ap.error("--calib-samples and --calib-len must be positive")
    if args.tokenizer_from and not os.path.isfile(os.path.join(args.tokenizer_from, "tokenizer.json")):
        ap.error(f"--tokenizer-from {args.tokenizer_from}: no tokenizer.json in it")

    plan = tensor_plan(cfg)
    total_bytes = sum(numel(s) * 2 for _, s, _ in plan)
    n_params = total_bytes // 2
    if inside_repo(args.out) and total_bytes > 2e9 and not args.allow_in_repo:
        sys.exit(f"error: --out {args.out} is inside the repository and the model is "
                 f"{total_bytes / 1e9:.1f} GB; write it under /tmp (or pass --allow-in-repo)")
    os.makedirs(args.out, exist_ok=True)
    old = [n for n in os.listdir(args.out)
           if n.endswith(".safetensors") or n == "model.safetensors.index.json"]
    if old and not args.force:
        sys.exit(f"error: {args.out} already holds {', '.join(sorted(old))}; pass --force to "
                 "replace them")
    for n in old:
        os.remove(os.path.join(args.out, n))
    free = shutil.disk_usage(args.out).free
    if free < total_bytes + (1 << 28):
        sys.exit(f"error: {args.out}: {free / 1e9:.1f} GB free, {total_bytes / 1e9:.1f} GB needed")

    print(f"{args.arch}: {cfg['num_hidden_layers']} layers, {n_params / 1e9:.3f} B parameters, "
          f"{total_bytes / 1e9:.2f} GB bf16 -> {args.out}", flush=True)
    t0 = time.time()
    hot = outlier_channels(args.seed, cfg["hidden_size"])
    shards = plan_shards(plan, int(args.max_shard_gb * 1e9))
    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    weight_map = {}
    for fname, tensors in zip(names, shards):
        path = os.path.join(args.out, fname)
        head, data_bytes = safetensors_header(tensors)
        with open(path, "wb") as f:
            f.write(head)
            for name, shape, kind in tensors:
                write_tensor(f, args.seed, name, shape, kind, hot)
                weight_map[name] = fname
        assert os.path.getsize(path) == len(head) + data_bytes, path
        print(f"  {fname}: {len(tensors)} tensors, {(len(head) + data_bytes) / 1e9:.2f} GB, "
              f"{time.time() - t0:.0f} s", flush=True)
    if len(shards) > 1:
        index = {"metadata": {"total_parameters": n_params, "total_size": total_bytes},
                 "weight_map": dict(sorted(weight_map.items()))}
        with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")

    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]}, f,
                  indent=2)
        f.write("\n")
    if args.tokenizer_from:
        copied = []
        for n in TOKENIZER_FILES:
            src = os.path.join(args.tokenizer_from, n)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(args.out, n))
                copied.append(n)
        from tokenizers import Tokenizer

        tv = Tokenizer.from_file(os.path.join(args.out, "tokenizer.json")).get_vocab_size(True)
        print(f"  tokenizer: {', '.join(copied)} from {args.tokenizer_from} ({tv} tokens)")
        if tv > cfg["vocab_size"]:
            print(f"  warning: the tokenizer has {tv} tokens, more than vocab_size "
                  f"{cfg['vocab_size']}: text it encodes can give ids past the embedding table")
        elif tv < cfg["vocab_size"]:
            print(f"  note: the tokenizer has {tv} tokens, fewer than vocab_size "
                  f"{cfg['vocab_size']}: fine for quantize/eval/bench, but generation can pick "
                  "an id it cannot decode")
    else:
        print("  no tokenizer (--tokenizer-from DIR): awq needs tokenizer.json to load the folder "
              "for quantize/eval")
    source = write_calib_ids(os.path.join(args.out, "calib_ids.jsonl"), args, cfg["vocab_size"])
    print(f"  calib_ids.jsonl: {args.calib_samples} x {args.calib_len} ids from {source}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"done: {total_bytes / 1e9:.2f} GB in {len(shards)} file(s), {time.time() - t0:.0f} s, "
          f"peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
