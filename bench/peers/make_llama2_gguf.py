#!/usr/bin/env python3
"""Writes a GGUF file with Llama-2-7B layer shapes and random F16 weights, for llama-bench.

The shapes are those of `awq bench --synthetic llama2-7b --layers N` (src/model/synthetic.cc):
hidden 4096, FFN 11008, 32 heads of 128 (no GQA), vocabulary 32000, untied output. Weights are
normal with std 0.02 (the values do not change the speed of any kernel; only their sizes do).
The vocabulary is a placeholder SentencePiece-style list (3 control tokens, 256 byte tokens,
then "tokN"), enough for llama.cpp to load the model and for llama-bench's random token ids.

Tensors are generated and written one at a time, so memory stays at one tensor (~180 MB).
Needs numpy and llama.cpp's gguf-py (PYTHONPATH=.../gguf-py); no torch.

  python3 bench/peers/make_llama2_gguf.py OUT.gguf [--layers 8] [--seed 0]
"""
import argparse
import sys

import numpy as np

import gguf

HIDDEN, FFN, HEADS, HEAD_DIM, VOCAB, CTX = 4096, 11008, 32, 128, 32000, 4096


def tensor_plan(layers):
    """(name, numpy shape [rows, cols], is_norm) in llama.cpp's order; ggml's ne is reversed."""
    plan = [("token_embd.weight", (VOCAB, HIDDEN), False)]
    for i in range(layers):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (HIDDEN,), True),
            (b + "attn_q.weight", (HEADS * HEAD_DIM, HIDDEN), False),
            (b + "attn_k.weight", (HEADS * HEAD_DIM, HIDDEN), False),
            (b + "attn_v.weight", (HEADS * HEAD_DIM, HIDDEN), False),
            (b + "attn_output.weight", (HIDDEN, HEADS * HEAD_DIM), False),
            (b + "ffn_norm.weight", (HIDDEN,), True),
            (b + "ffn_gate.weight", (FFN, HIDDEN), False),
            (b + "ffn_up.weight", (FFN, HIDDEN), False),
            (b + "ffn_down.weight", (HIDDEN, FFN), False),
        ]
    plan += [("output_norm.weight", (HIDDEN,), True), ("output.weight", (VOCAB, HIDDEN), False)]
    return plan


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name(f"llama2-7b-shapes-{a.layers}-layers-random")
    w.add_context_length(CTX)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(a.layers)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(VOCAB)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    # Placeholder vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then plain pieces.
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += [f"\u2581tok{i}" for i in range(VOCAB - len(tokens))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    types += [gguf.TokenType.NORMAL] * (VOCAB - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * VOCAB)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    plan = tensor_plan(a.layers)
    for name, shape, is_norm in plan:
        dtype = np.float32 if is_norm else np.float16
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        w.add_tensor_info(name, shape, np.dtype(dtype), nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(a.seed)
    for i, (name, shape, is_norm) in enumerate(plan):
        if is_norm:
            t = np.ones(shape, dtype=np.float32)
        else:
            t = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)
        w.write_tensor_data(t)
        print(f"\r{i + 1}/{len(plan)} tensors", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    w.close()


if __name__ == "__main__":
    main()
