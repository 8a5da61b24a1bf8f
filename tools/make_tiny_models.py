#!/usr/bin/env python3
"""Tiny random-weight models with golden logits: tests/data/tiny/<name>/.

For each model family the C++ engine supports beyond Llama, builds a small transformers model
with seeded random weights and writes a Hugging Face folder:

  config.json, generation_config.json   as save_pretrained writes them (transformers 5 format:
                                        RoPE settings under "rope_parameters")
  model.safetensors                     float32
  tokenizer.json, tokenizer_config.json copied from tests/data/tokenizer_tiny/ (400 BPE tokens
                                        + 5 added = vocab_size 405)
  golden.json                           full fp32 logits at every position of 3 fixed prompts,
                                        computed with model(input_ids), eager attention, after
                                        reloading the saved folder; config facts; checks

Families: qwen3, mistral, phi3, llama3_rope, qwen2_yarn, gemma3, gemma2, the mixtures of
experts mixtral, qwen3_moe, qwen2_moe (transformers 5 fuses experts in memory but saves them
under the per-expert names published checkpoints use), and the recurrent mamba and rwkv (their
golden.json adds "greedy": greedy tokens by full forwards) (format:
docs/GOLDEN.md, "Tiny random models"). Every run with the same library versions rewrites the
same bytes (seeded weights, fixed prompts, no timestamps).

Usage: python3 tools/make_tiny_models.py [--only NAME[,NAME]] [--out-dir DIR] [--threads 2]
       python3 tools/make_tiny_models.py --verify   # reload each folder, recompute, compare
"""
import argparse
import copy
import importlib.metadata as md
import json
import math
import os
import platform
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(REPO, "tests", "data", "tokenizer_tiny")
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "tiny")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

VOCAB = 405  # tokenizer_tiny: 400 BPE tokens + 5 added (ids 400..404)
BOS, EOS = 400, 401  # <|begin_of_text|>, <|eot_id|>
PROMPT_SEED = 1234
PROMPT_LENGTHS = (7, 23, 40)
SIG = 6  # significant digits of the stored logits

# Initialisation: linear weights and biases ~ N(0, LINEAR_STD), embeddings ~ N(0, EMBED_STD),
# RMSNorm weights ~ N(1, NORM_STD) (Gemma: stored w ~ N(0, NORM_STD), applied as 1 + w).
LINEAR_STD, EMBED_STD, NORM_STD = 0.1, 0.3, 0.1

COMMON = dict(vocab_size=VOCAB, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=64, rms_norm_eps=1e-6, bos_token_id=BOS,
              eos_token_id=EOS, pad_token_id=None)


def family_specs():
    """name -> (transformers class name, config class name, config kwargs, seed, notes)."""
    return {
        "qwen3": ("Qwen3ForCausalLM", "Qwen3Config", dict(
            COMMON, intermediate_size=96, num_hidden_layers=2, head_dim=24,
            rope_theta=1_000_000.0, tie_word_embeddings=True, attention_bias=False), 101,
            "q_norm/k_norm per head; head_dim 24 so heads*head_dim (96) != hidden (64); "
            "tied embeddings"),
        "mistral": ("MistralForCausalLM", "MistralConfig", dict(
            COMMON, intermediate_size=96, num_hidden_layers=2, head_dim=16, sliding_window=8,
            rope_theta=10000.0, tie_word_embeddings=False), 102,
            "sliding_window 8 on every layer: key j is visible to query i iff 0 <= i - j < 8"),
        "phi3": ("Phi3ForCausalLM", "Phi3Config", dict(
            COMMON, intermediate_size=96, num_hidden_layers=2, rope_theta=10000.0,
            tie_word_embeddings=False, hidden_act="silu", original_max_position_embeddings=64,
            resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0), 103,
            "fused qkv_proj ([q; k; v] rows) and gate_up_proj ([gate; up] rows) in the "
            "checkpoint; partial_rotary_factor 1.0"),
        "llama3_rope": ("LlamaForCausalLM", "LlamaConfig", dict(
            COMMON, intermediate_size=96, num_hidden_layers=2, tie_word_embeddings=False,
            rope_theta=10000.0, rope_scaling={
                "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 16}), 104,
            "Llama-3.1 RoPE frequency scaling with original_max_position_embeddings 16"),
        "qwen2_yarn": ("Qwen2ForCausalLM", "Qwen2Config", dict(
            COMMON, intermediate_size=96, num_hidden_layers=2, rope_theta=10000.0,
            tie_word_embeddings=True, rope_scaling={
                "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}),
            105, "q/k/v biases; YaRN RoPE scaling (inv_freq blend and attention_scaling on "
            "cos/sin); tied embeddings"),
        "gemma3": ("Gemma3ForCausalLM", "Gemma3TextConfig", dict(
            COMMON, hidden_size=48, intermediate_size=64, num_hidden_layers=6, head_dim=16,
            query_pre_attn_scalar=24, sliding_window=8, rope_theta=1_000_000.0,
            rope_local_base_freq=10000.0, hidden_activation="gelu_pytorch_tanh",
            tie_word_embeddings=True, attn_logit_softcapping=None,
            final_logit_softcapping=None), 106,
            "5 sliding (window 8, RoPE base 1e4) : 1 full (RoPE base 1e6) layers; hidden 48 "
            "but 4 heads x head_dim 16 = 64 wide q/o; "
            "query scale 24**-0.5; embeddings times sqrt(48); norms apply (1 + w); "
            "q_norm/k_norm; pre/post attention and feed-forward norms"),
        "gemma2": ("Gemma2ForCausalLM", "Gemma2Config", dict(
            COMMON, intermediate_size=96, num_hidden_layers=2, head_dim=16,
            query_pre_attn_scalar=24, sliding_window=8, rope_theta=10000.0,
            hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
            attn_logit_softcapping=50.0, final_logit_softcapping=30.0), 107,
            "alternating sliding (window 8) / full layers; attention logits soft-capped at 50 "
            "(50 * tanh(s / 50)), final logits at 30; query scale 24**-0.5; norms apply "
            "(1 + w)"),
        "mixtral": ("MixtralForCausalLM", "MixtralConfig", dict(
            COMMON, intermediate_size=72, num_hidden_layers=2, head_dim=16,
            num_local_experts=4, num_experts_per_tok=2, rope_theta=10000.0,
            sliding_window=None, tie_word_embeddings=False), 108,
            "mixture of experts on every layer: router block_sparse_moe.gate over 4 experts "
            "(w1/w3/w2, width 72), top-2, the two probabilities renormalised to sum 1"),
        "qwen3_moe": ("Qwen3MoeForCausalLM", "Qwen3MoeConfig", dict(
            COMMON, intermediate_size=96, moe_intermediate_size=40, num_hidden_layers=2,
            head_dim=24, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
            decoder_sparse_step=1, mlp_only_layers=[], rope_theta=1_000_000.0,
            tie_word_embeddings=False, attention_bias=False), 109,
            "mixture of experts on every layer: router mlp.gate over 4 experts "
            "(gate/up/down_proj, width 40), top-2, norm_topk_prob true; q_norm/k_norm; "
            "head_dim 24"),
        "qwen2_moe": ("Qwen2MoeForCausalLM", "Qwen2MoeConfig", dict(
            COMMON, intermediate_size=96, moe_intermediate_size=40,
            shared_expert_intermediate_size=56, num_hidden_layers=3, num_experts=4,
            num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1,
            mlp_only_layers=[1], rope_theta=10000.0, tie_word_embeddings=False), 110,
            "layers 0 and 2 mixtures of 4 experts (width 40), top-2 probabilities not "
            "renormalised, plus a shared expert (width 56) scaled by "
            "sigmoid(shared_expert_gate x); layer 1 in mlp_only_layers keeps a dense MLP "
            "(width 96); q/k/v biases"),
        "mamba": ("MambaForCausalLM", "MambaConfig", dict(
            vocab_size=VOCAB, hidden_size=48, num_hidden_layers=3, state_size=12, expand=2,
            conv_kernel=4, time_step_rank=8, use_bias=True, use_conv_bias=True,
            time_step_min=0.05, time_step_max=0.5,
            layer_norm_epsilon=1e-5, residual_in_fp32=True, tie_word_embeddings=True,
            bos_token_id=BOS, eos_token_id=EOS, pad_token_id=None), 111,
            "Mamba v1: RMSNorm -> in_proj (with bias) -> causal depthwise conv (kernel 4) + SiLU "
            "-> x_proj -> dt_proj + softplus -> selective scan (state 12, A = -exp(A_log), D "
            "skip) gated by SiLU(z) -> out_proj (with bias); d_inner 96, time_step_rank 8; "
            "tied embeddings; dt initialised in [0.05, 0.5], x_proj and out_proj weights "
            "N(0, 0.3), embeddings N(0, 0.1), so the scan state carries the sequence; reference: transformers' "
            "sequential torch path (no CUDA kernels)"),
        "rwkv": ("RwkvForCausalLM", "RwkvConfig", dict(
            vocab_size=VOCAB, hidden_size=48, attention_hidden_size=40, intermediate_size=72,
            num_hidden_layers=4, layer_norm_epsilon=1e-2, rescale_every=2, context_length=64,
            tie_word_embeddings=False, bos_token_id=BOS, eos_token_id=EOS), 112,
            "RWKV-4: layer_norm_epsilon 1e-2 (so that the halving of rescale_every and "
            "ln_out's fixed epsilon 1e-5 change the logits measurably); pre_ln on layer 0; time-mix (token shift, key/value/receptance, WKV with "
            "time_decay/time_first) of width 40 and channel-mix (token shift, squared ReLU key "
            "of width 72, sigmoid receptance); LayerNorms with bias; rescale_every 2: in "
            "inference mode transformers divides layer l's attention.output and "
            "feed_forward.value weights by 2**(l // 2) and halves the hidden state after "
            "layers 1 and 3 (the checkpoint holds the undivided weights)"),
    }


# Router weights ~ N(0, ROUTER_STD) (router logits ~ N(0, 1.6) on the normed hidden state): the
# experts mix without the softmax saturating, and the k-th and (k+1)-th router logits of every
# token differ by far more than fp32 noise (checks.min_router_topk_logit_margin), so an engine
# that agrees with transformers to 1e-5 picks the same experts.
ROUTER_STD = 0.2


def is_router(name):
    return name.endswith("mlp.gate.weight") or name.endswith("block_sparse_moe.gate.weight")


def log(msg):
    print(msg, flush=True)


def versions():
    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "safetensors", "numpy"):
        out[pkg] = md.version(pkg)
    return out


def prompts():
    import numpy as np

    rs = np.random.RandomState(PROMPT_SEED)
    return [[int(v) for v in rs.randint(0, VOCAB, size=n)] for n in PROMPT_LENGTHS]


def sig(v):
    return float(f"{v:.{SIG}g}")


def is_gemma(model_type):
    return model_type.startswith("gemma")


def is_recurrent(model_type):
    return model_type in ("mamba", "rwkv")


def has_greedy(model_type):
    """Families whose golden.json carries greedy tokens: the recurrent ones and the mixtures of
    experts (whose routing a generation exercises token by token)."""
    return is_recurrent(model_type) or model_type in ("mixtral", "qwen3_moe", "qwen2_moe")


# Recurrent parameters keep transformers' own initialisation (which gives them their working
# ranges: A_log = log(1..N), dt_proj.bias = softplus^-1 of dt in [1e-3, 0.1], RWKV's decay and
# mix ramps) plus N(0, RECURRENT_NOISE) so no two channels are alike.
RECURRENT_NOISE = 0.1
RECURRENT_KEEP = ("A_log", "dt_proj.bias", "time_decay", "time_first", "time_mix_")
# Mamba's x_proj (dt, B, C) and out_proj drawn wider than other linears, its embeddings
# narrower: otherwise the mixers' output is small next to the embedding the residual carries,
# and the tied head mostly repeats the last token.
RECURRENT_STD = {"x_proj.weight": 0.3, "out_proj.weight": 0.3, "backbone.embeddings.weight": 0.1}


def init_recurrent(model, g):
    import torch

    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if any(k in name for k in RECURRENT_KEEP):
            # transformers' _init_weights has run at construction: the values are its ranges.
            assert torch.isfinite(p).all() and p.abs().max() < 100, name
            p.add_(noise * RECURRENT_NOISE)
        elif name.endswith(".D"):
            p.copy_(noise * NORM_STD + 1.0)
        elif "conv1d.weight" in name:
            p.copy_(noise * 0.3)
        elif p.ndim == 1 and ("norm" in name or ".ln" in name or "pre_ln" in name):
            p.copy_(noise * NORM_STD + (1.0 if name.endswith("weight") else 0.0))
        elif any(name.endswith(k) for k in RECURRENT_STD):
            p.copy_(noise * next(v for k, v in RECURRENT_STD.items() if name.endswith(k)))
        elif "embeddings" in name:
            p.copy_(noise * EMBED_STD)
        else:  # linear weights and biases, the convolution's bias
            p.copy_(noise * LINEAR_STD)


def init_weights(model, seed):
    import torch

    if is_recurrent(model.config.model_type):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            init_recurrent(model, g)
        return
    gemma = is_gemma(model.config.model_type)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied lm_head appears once (as embed_tokens)
            if p.ndim == 1 and "norm" in name:
                std, mean = NORM_STD, (0.0 if gemma else 1.0)
            elif "embed_tokens" in name:
                std, mean = EMBED_STD, 0.0
            elif is_router(name):
                std, mean = ROUTER_STD, 0.0
            else:  # linear weights and biases
                std, mean = LINEAR_STD, 0.0
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * std + mean)


def make_config(cls_name, kwargs):
    import transformers

    cfg = getattr(transformers, cls_name)(**kwargs)
    if cfg.model_type in ("mamba", "rwkv"):
        return cfg
    cfg._attn_implementation = "eager"
    if "num_experts_per_tok" in kwargs:
        # The per-expert loop, not grouped_mm: the plain reference, and it runs in float64 too.
        cfg._experts_implementation = "eager"
    return cfg


def load_kwargs(folder):
    """from_pretrained's arguments: fp32, eager attention, eager experts for a MoE model."""
    import torch

    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    moe = "num_experts_per_tok" in cfg
    if is_recurrent(cfg["model_type"]):
        return dict(dtype=torch.float32)
    return dict(dtype=torch.float32, attn_implementation="eager",
                **({"experts_implementation": "eager"} if moe else {}))


def logits_of(model, ids, **kw):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids]), use_cache=False, **kw).logits[0]


def variant(model, edit):
    """The same weights under an edited config (to show what a feature changes)."""
    cfg = copy.deepcopy(model.config)
    edit(cfg)
    m = type(model)(cfg)
    m.load_state_dict(model.state_dict())
    return m.eval()


def max_diffs(model_a, model_b, ps):
    return [float("%.3g" % float((logits_of(model_a, p) - logits_of(model_b, p)).abs().max()))
            for p in ps]


def window_masks(T, window, dtype):
    """Additive masks: causal, and causal with key j visible to query i iff i - j < window."""
    import torch

    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    neg = torch.finfo(dtype).min
    full = torch.where(j <= i, 0.0, neg).to(dtype)[None, None]
    slide = torch.where((j <= i) & (i - j < window), 0.0, neg).to(dtype)[None, None]
    slide_le = torch.where((j <= i) & (i - j <= window), 0.0, neg).to(dtype)[None, None]
    return full, slide, slide_le


def rope_facts(model):
    rot = model.model.rotary_emb
    if hasattr(rot, "inv_freq"):
        return {"all": {"inv_freq": [float(v) for v in rot.inv_freq],
                        "attention_scaling": float(rot.attention_scaling)}}
    return {lt: {"inv_freq": [float(v) for v in getattr(rot, f"{lt}_inv_freq")],
                 "attention_scaling": float(getattr(rot, f"{lt}_attention_scaling"))}
            for lt in rot.layer_types}


def checks(name, model, ps):
    """Evidence that the fixture exercises its feature, and how transformers implements it."""
    import torch

    out = {}
    cfg = model.config
    if is_recurrent(cfg.model_type):
        return recurrent_checks(model, ps)
    layer_types = list(getattr(cfg, "layer_types", None) or [])
    if getattr(cfg, "sliding_window", None):
        w = cfg.sliding_window

        def no_window(c):  # a window longer than any prompt (layer types and RoPE kept)
            c.sliding_window = 1 << 20

        out["max_abs_diff_without_sliding_window"] = max_diffs(model, variant(model, no_window),
                                                               ps)
        # Explicit masks: reproduce the golden with hand-made masks (i - j < window), and show
        # the alternative reading (i - j <= window) does not.
        agree, agree_le = [], []
        for p in ps:
            full, slide, slide_le = window_masks(len(p), w, torch.float32)
            ref = logits_of(model, p)
            if layer_types:
                m = {"full_attention": full, "sliding_attention": slide}
                m_le = {"full_attention": full, "sliding_attention": slide_le}
                got = logits_of(model, p, attention_mask=m)
                got_le = logits_of(model, p, attention_mask=m_le)
            else:
                base = variant(model, no_window)
                got = logits_of(base, p, attention_mask=slide)
                got_le = logits_of(base, p, attention_mask=slide_le)
            agree.append(float("%.3g" % float((got - ref).abs().max())))
            agree_le.append(float("%.3g" % float((got_le - ref).abs().max())))
        out["sliding_window_rule"] = "key j visible to query i iff 0 <= i - j < sliding_window"
        out["max_abs_diff_vs_explicit_mask_i_minus_j_lt_window"] = agree
        out["max_abs_diff_vs_explicit_mask_i_minus_j_le_window"] = agree_le
    rp = getattr(cfg, "rope_parameters", None) or {}
    flat = rp.get("full_attention", rp) if isinstance(rp, dict) else {}
    if flat.get("rope_type", "default") != "default":
        def no_scaling(c):
            c.rope_parameters = {"rope_type": "default", "rope_theta": flat["rope_theta"]}
        out["max_abs_diff_without_rope_scaling"] = max_diffs(model, variant(model, no_scaling),
                                                             ps)
    if getattr(cfg, "query_pre_attn_scalar", None) not in (None, getattr(cfg, "head_dim", None)):
        def qpas(c):
            c.query_pre_attn_scalar = c.head_dim
        out["max_abs_diff_with_query_pre_attn_scalar_eq_head_dim"] = max_diffs(
            model, variant(model, qpas), ps)
    if getattr(cfg, "attn_logit_softcapping", None):
        def no_attn_cap(c):
            c.attn_logit_softcapping = None
        out["max_abs_diff_without_attn_softcapping"] = max_diffs(model,
                                                                 variant(model, no_attn_cap), ps)
    if getattr(cfg, "final_logit_softcapping", None):
        def no_final_cap(c):
            c.final_logit_softcapping = None
        out["max_abs_diff_without_final_softcapping"] = max_diffs(
            model, variant(model, no_final_cap), ps)
    if name == "gemma3":
        def one_base(c):
            c.rope_parameters["sliding_attention"]["rope_theta"] = \
                c.rope_parameters["full_attention"]["rope_theta"]
        out["max_abs_diff_with_local_rope_base_eq_global"] = max_diffs(
            model, variant(model, one_base), ps)
    if getattr(cfg, "num_experts_per_tok", None):
        out["min_router_topk_logit_margin"] = router_margins(model, ps)
        if getattr(cfg, "norm_topk_prob", None) is not None and cfg.model_type != "mixtral":
            def flip_norm(c):
                c.norm_topk_prob = not c.norm_topk_prob
            out["max_abs_diff_with_norm_topk_prob_flipped"] = max_diffs(
                model, variant(model, flip_norm), ps)
    # fp32 versus fp64: the noise floor of the stored logits
    m64 = copy.deepcopy(model).to(torch.float64)
    out["max_abs_diff_fp32_vs_fp64"] = [
        float("%.3g" % float((logits_of(model, p).double() - logits_of(m64, p)).abs().max()))
        for p in ps]
    return out


def recurrent_checks(model, ps):
    """What the recurrent fixtures exercise: for RWKV, how much rescale_every changes the
    logits (the halving is exact in arithmetic, so only the LayerNorm epsilon and rounding
    differ); the fp32 versus fp64 noise floor."""
    import torch

    out = {}
    cfg = model.config
    import transformers

    if cfg.model_type == "rwkv" and cfg.rescale_every > 0:
        # From the folder: after an inference forward, the model's own weights are divided in
        # place (layers_are_rescaled), so its state_dict is not the checkpoint's.
        plain = transformers.AutoModelForCausalLM.from_pretrained(
            cfg._name_or_path, dtype=torch.float32, rescale_every=0).eval()
        out["max_abs_diff_with_rescale_every_0"] = max_diffs(model, plain, ps)
    # The recurrence matters: the logits with the state's decay changed (A_log + 1: Mamba's
    # scan decays e times faster; time_decay + 1: RWKV's WKV likewise).
    edited = transformers.AutoModelForCausalLM.from_pretrained(
        cfg._name_or_path, dtype=torch.float32).eval()
    with torch.no_grad():
        for n, prm in edited.named_parameters():
            if n.endswith("A_log") or n.endswith("time_decay"):
                prm.add_(1.0)
    key = "A_log" if cfg.model_type == "mamba" else "time_decay"
    out[f"max_abs_diff_with_{key}_plus_1"] = max_diffs(model, edited, ps)
    try:
        m64 = copy.deepcopy(model).to(torch.float64)
        out["max_abs_diff_fp32_vs_fp64"] = [
            float("%.3g" % float((logits_of(model, p).double() - logits_of(m64, p)).abs().max()))
            for p in ps]
    except (RuntimeError, TypeError) as e:  # a path that does not run in float64
        out["fp64_unavailable"] = str(e)[:120]
    return out


def router_margins(model, ps):
    """Per prompt, the smallest gap between the k-th and (k+1)-th router logit of any token in
    any sparse layer (the router's input captured, its product recomputed in fp64): the choice
    of experts is stable where this is far above fp32 noise (~1e-6)."""
    import torch

    k = model.config.num_experts_per_tok
    routers = [(n, m) for n, m in model.named_modules()
               if n.endswith("mlp.gate") or n.endswith("block_sparse_moe.gate")]
    out = []
    for p in ps:
        seen = []
        hooks = [m.register_forward_pre_hook(
            lambda mod, args, seen=seen: seen.append(
                (args[0].reshape(-1, args[0].shape[-1]).double(), mod.weight.double())))
            for _, m in routers]
        logits_of(model, p)
        for h in hooks:
            h.remove()
        worst = math.inf
        for x, w in seen:
            top = (x @ w.T).topk(k + 1, dim=-1).values
            worst = min(worst, float((top[:, k - 1] - top[:, k]).min()))
        out.append(float("%.3g" % worst))
    return out


def dump_json(obj, path):
    """JSON with one line per innermost list of numbers (logit rows), indent 1 elsewhere."""
    def enc(o, ind):
        pad = " " * ind
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [f'{pad} {json.dumps(k)}: {enc(v, ind + 1)}' for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list):
            if all(not isinstance(v, (dict, list)) for v in o):
                return json.dumps(o, separators=(",", ":"))
            items = [pad + " " + enc(v, ind + 1) for v in o]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(o)

    with open(path, "w") as f:
        f.write(enc(obj, 0) + "\n")


def golden(name, model, cls_name, seed, notes, ps):
    import torch

    cfg = model.config
    rows = []
    for p in ps:
        lg = logits_of(model, p)
        lgd = lg.double()
        rows.append({
            "ids": p,
            "argmax": [int(v) for v in lg.argmax(dim=-1)],
            "logsumexp": [sig(float(v)) for v in torch.logsumexp(lgd, dim=-1)],
            "logits": [[sig(float(v)) for v in row] for row in lg],
        })
    if is_recurrent(cfg.model_type):
        facts = recurrent_facts(cfg, cls_name)
    else:
        facts = {
            "model_type": cfg.model_type,
            "architecture": cls_name,
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "head_dim": getattr(cfg, "head_dim", None) or
            cfg.hidden_size // cfg.num_attention_heads,
            "sliding_window": getattr(cfg, "sliding_window", None),
            "layer_types": list(getattr(cfg, "layer_types", None) or []) or None,
            "rope_parameters": getattr(cfg, "rope_parameters", None),
            "tie_word_embeddings": bool(cfg.tie_word_embeddings),
            "max_position_embeddings": cfg.max_position_embeddings,
            "rms_norm_eps": cfg.rms_norm_eps,
        }
    for k in ("query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping",
              "hidden_activation", "hidden_act", "attention_bias", "partial_rotary_factor",
              "num_local_experts", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
              "norm_topk_prob", "shared_expert_intermediate_size", "decoder_sparse_step",
              "mlp_only_layers", "qkv_bias"):
        if hasattr(cfg, k):
            facts[k] = getattr(cfg, k)
    from safetensors import safe_open
    return {
        "generator": "tools/make_tiny_models.py",
        "name": name,
        "notes": notes,
        "seed": seed,
        "init": dict({"linear_std": LINEAR_STD, "embed_std": EMBED_STD, "norm_std": NORM_STD,
                      "norm_mean": 0.0 if is_gemma(cfg.model_type) else 1.0},
                     **({"router_std": ROUTER_STD}
                        if getattr(cfg, "num_experts_per_tok", None) else {})),
        "versions": versions(),
        "dtype": "float32",
        "attn_implementation": None if is_recurrent(cfg.model_type) else "eager",
        "torch_threads": torch.get_num_threads(),
        "call": "model(input_ids).logits, batch 1, no attention_mask, positions 0..T-1",
        "config": facts,
        "rope": None if is_recurrent(cfg.model_type) else rope_facts(model),
        "checkpoint_tensors": None,  # filled by the caller
        "prompt_seed": PROMPT_SEED,
        "logits_significant_digits": SIG,
        "checks": None,  # filled by the caller
        "prompts": rows,
        **({"greedy": greedy(model, ps[0])} if has_greedy(cfg.model_type) else {}),
    }


GREEDY_NEW_TOKENS = 16


def recurrent_facts(cfg, cls_name):
    """The config as the recurrent families read it."""
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
            "layer_norm_epsilon", "tie_word_embeddings", "state_size", "expand", "conv_kernel",
            "time_step_rank", "use_bias", "use_conv_bias", "residual_in_fp32",
            "attention_hidden_size", "rescale_every", "context_length")
    facts = {"model_type": cfg.model_type, "architecture": cls_name}
    for k in keys:
        if hasattr(cfg, k):
            facts[k] = getattr(cfg, k)
    return facts


def greedy(model, prompt):
    """Greedy continuation of `prompt`: each next token the argmax of a full forward over the
    sequence so far (use_cache=False, so the reference never goes through transformers' own
    recurrent-state path), with the smallest top-1 minus top-2 logit margin seen."""
    ids = list(prompt)
    margin = math.inf
    for _ in range(GREEDY_NEW_TOKENS):
        last = logits_of(model, ids)[-1].double()
        top = last.topk(2).values
        margin = min(margin, float(top[0] - top[1]))
        ids.append(int(last.argmax()))
    return {"prompt": list(prompt), "new_tokens": ids[len(prompt):],
            "min_top2_margin": float("%.3g" % margin)}


def build(name, spec, out_dir, ps):
    import torch
    import transformers
    from safetensors import safe_open

    cls_name, cfg_name, kwargs, seed, notes = spec
    torch.manual_seed(seed)
    cfg = make_config(cfg_name, kwargs)
    model = getattr(transformers, cls_name)(cfg).eval()
    init_weights(model, seed)
    folder = os.path.join(out_dir, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    model.save_pretrained(folder)
    for f in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(TOKENIZER_DIR, f), os.path.join(folder, f))
    # The golden comes from the folder as written (checks the save/load round trip).
    loaded = transformers.AutoModelForCausalLM.from_pretrained(folder,
                                                               **load_kwargs(folder)).eval()
    assert type(loaded).__name__ == cls_name, type(loaded).__name__
    for p in ps:
        assert torch.equal(logits_of(model, p), logits_of(loaded, p)), "reload changed logits"
    g = golden(name, loaded, cls_name, seed, notes, ps)
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        g["checkpoint_tensors"] = {k: list(f.get_slice(k).get_shape()) for k in sorted(f.keys())}
    g["checks"] = checks(name, loaded, ps)
    dump_json(g, os.path.join(folder, "golden.json"))
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    log(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, folder "
        f"{size / 1024:.0f} KiB; checks {json.dumps(g['checks'])}")
    return folder


def verify(name, out_dir, ps):
    import torch
    import transformers

    folder = os.path.join(out_dir, name)
    with open(os.path.join(folder, "golden.json")) as f:
        g = json.load(f)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder,
                                                              **load_kwargs(folder)).eval()
    worst = 0.0
    for row, p in zip(g["prompts"], ps):
        assert row["ids"] == p, "prompt ids changed"
        lg = logits_of(model, p)
        worst = max(worst, float((lg - torch.tensor(row["logits"])).abs().max()))
    log(f"{name}: max |logit - golden| = {worst:.3g}")
    return worst < 1e-4


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated names")
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verify", action="store_true")
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    specs = family_specs()
    names = [n for n in args.only.split(",") if n] or list(specs)
    for n in names:
        if n not in specs:
            sys.exit(f"unknown model {n}; known: {', '.join(specs)}")
    with open(os.path.join(TOKENIZER_DIR, "tokenizer.json")) as f:
        tj = json.load(f)
    n_vocab = len(tj["model"]["vocab"]) + len(
        [t for t in tj["added_tokens"] if t["id"] >= len(tj["model"]["vocab"])])
    assert n_vocab == VOCAB, f"tokenizer_tiny has {n_vocab} tokens, expected {VOCAB}"
    ps = prompts()
    ok = True
    for n in names:
        if args.verify:
            ok &= verify(n, args.out_dir, ps)
        else:
            os.makedirs(args.out_dir, exist_ok=True)
            build(n, specs[n], args.out_dir, ps)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
