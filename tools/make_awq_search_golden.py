#!/usr/bin/env python3
"""Golden values for the AWQ scale and clip searches: tests/data/awq_search_golden.{bin,json}.

A re-implementation in torch fp32 of AutoAWQ's search logic (awq/quantize/quantizer.py:
_search_best_scale, _compute_best_scale, _compute_best_clip, pseudo_quantize_tensor), written
from AWQ.md sections 2-4, on small synthetic data:
  x  [256, 64]  standard normal, channels 5, 17 and 40 scaled by 20 (activation outliers);
  w1 [48, 64], w2 [32, 64]  normal * 0.05, two linears that share the input x.
The "module" of the scale search is just the two linears: its output is the concatenation of
x @ w1^T and x @ w2^T, and the loss is the fp32 mean squared error against the original output.

One deliberate difference from AutoAWQ, matching awq.cpp's quantizer (include/awq/quantizer.h):
every group scale is rounded to fp16 before the zero point and the codes are computed from it
(AutoAWQ searches with the checkpoint-dtype scale and rounds to fp16 only when it packs).

Cases written:
  scale_duo     duo scaling on,  4 bits, group 16, zero point: the 20 grid losses, the identity
                loss (s = 1), the best grid index and its scales;
  scale_noduo   the same with duo scaling off (llm-awq's formula);
  clip_a        w1, x, 4 bits, group 16, zero point, n_sample_token 512 (every token);
  clip_b        w2, x, 4 bits, one group per row (-1), symmetric, n_sample_token 32 (every 8th
                token: fewer tokens than the group is wide);
  clip_c        w1, x, 3 bits, group 32, zero point, n_sample_token 100 (every 2nd token).
Every clip case uses n_grid 20 and max_shrink 0.5, and the script checks that the winning error
of every (channel, group) beats every other candidate by a relative margin of at least 1e-4, and
the scale search's winner its runner-up by 1e-3, so an fp32 re-implementation that sums in a
different order picks the same candidates.

Layout of the .bin: float32 little-endian x, then w1, then w2 (row-major); the .json holds the
shapes, float offsets and the expected values (floats as Python reprs of fp32 values).

Usage: python3 tools/make_awq_search_golden.py [--out-dir tests/data]
Deterministic: torch.manual_seed(0), one thread. Runs in a few seconds.
"""
import argparse
import json
import os

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TOKENS, IN, OUT1, OUT2 = 256, 64, 48, 32
OUTLIERS = [5, 17, 40]
N_GRID = 20


def pseudo_quantize(w, bits, group_size, zero_point):
    """AWQ.md section 4 with fp16-rounded group scales; w [rows, in] -> same shape."""
    shape = w.shape
    gs = group_size if group_size > 0 else shape[-1]
    w = w.reshape(-1, gs)
    if zero_point:
        max_val = w.amax(dim=1, keepdim=True)
        min_val = w.amin(dim=1, keepdim=True)
        max_int = 2**bits - 1
        scales = ((max_val - min_val).clamp(min=1e-5) / max_int).half().float()
        zeros = (-torch.round(min_val / scales)).clamp(0, max_int)
        w = (torch.clamp(torch.round(w / scales) + zeros, 0, max_int) - zeros) * scales
    else:
        max_val = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-5)
        max_int = 2 ** (bits - 1) - 1
        min_int = -(2 ** (bits - 1))
        scales = (max_val / max_int).half().float()
        w = torch.clamp(torch.round(w / scales), min_int, max_int) * scales
    return w.reshape(shape)


def w_mean_of(weights, group_size):
    weight = torch.cat(weights, dim=0)
    shape = weight.shape
    weight = weight.view(-1, group_size)
    w_scale = weight.abs() / (weight.abs().amax(dim=1, keepdim=True) + 1e-6)
    return w_scale.view(shape).mean(0)


def candidate_scales(x_mean, w_mean, ratio, duo):
    if duo:
        s = (x_mean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4)).clamp(min=1e-4)
    else:
        s = x_mean.pow(ratio).clamp(min=1e-4).view(-1)
    s = s / (s.max() * s.min()).sqrt()
    s[torch.isinf(s)] = 1
    s[torch.isnan(s)] = 1
    return s


def module(x, weights):
    return torch.cat([x @ w.t() for w in weights], dim=-1)


def mse(a, b):
    return (a - b).float().pow(2).sum().item() / a.numel()


def scale_search(x, weights, bits, group_size, duo):
    x_mean = x.abs().sum(dim=0) / x.shape[0]
    w_mean = w_mean_of(weights, group_size)
    ref = module(x, weights)

    def loss_of(s):
        q = [pseudo_quantize(w * s.view(1, -1), bits, group_size, True) / s.view(1, -1)
             for w in weights]
        return mse(ref, module(x, q))

    losses, cands = [], []
    for i in range(N_GRID):
        ratio = torch.tensor(float(i), dtype=torch.float32) / N_GRID
        s = candidate_scales(x_mean, w_mean, ratio, duo)
        cands.append(s)
        losses.append(loss_of(s))
    identity = loss_of(torch.ones(IN))
    best = min(range(N_GRID), key=lambda i: (losses[i], i))
    ordered = sorted(losses + [identity])
    margin = (ordered[1] - ordered[0]) / ordered[0]
    assert margin > 1e-3, f"scale search near-tie (relative margin {margin})"
    assert losses[best] < identity, "the identity won; pick data where AWQ helps"
    return {
        "duo_scaling": duo, "bits": bits, "group_size": group_size, "n_grid": N_GRID,
        "x_mean": x_mean.tolist(), "w_mean": w_mean.tolist(), "losses": losses,
        "identity_loss": identity, "best_index": best, "best_scales": cands[best].tolist(),
        "ratio0_scales": cands[0].tolist(), "min_relative_margin": margin,
    }


def clip_search(w, x, bits, group_size, zero_point, n_sample_token, n_grid=20, max_shrink=0.5):
    out, inw = w.shape
    gs = group_size if group_size > 0 else inw
    feat = x.reshape(1, x.shape[0], -1, gs)
    step = max(1, feat.shape[1] // n_sample_token)
    feat = feat[:, ::step]
    wg = w.reshape(out, 1, -1, gs)
    org_max = wg.abs().amax(dim=-1, keepdim=True)
    org_out = (feat * wg).sum(dim=-1)
    errs, vals = [], []
    for i_s in range(int(max_shrink * n_grid)):
        max_val = org_max * (1 - i_s / n_grid)
        cur = torch.clamp(wg, -max_val, max_val)
        q = pseudo_quantize(cur.reshape(out, inw), bits, group_size, zero_point).reshape(wg.shape)
        cur_out = (feat * q).sum(dim=-1)
        errs.append((cur_out - org_out).pow(2).mean(dim=1).view(org_max.shape))
        vals.append(max_val)
    errs = torch.stack(errs)  # [n_cand, out, 1, n_groups, 1]
    vals = torch.stack(vals)
    best = torch.argmin(errs, dim=0, keepdim=True)  # first minimum on ties
    best_val = torch.gather(vals, 0, best)[0].reshape(out, -1)
    best_err = torch.gather(errs, 0, best)
    others = errs.masked_fill(torch.arange(errs.shape[0]).view(-1, 1, 1, 1, 1) == best,
                              float("inf"))
    margin = ((others.amin(dim=0, keepdim=True) - best_err) / best_err.clamp(min=1e-30)).min()
    assert margin.item() > 1e-4, f"clip search near-tie (relative margin {margin.item()})"
    return {
        "bits": bits, "group_size": group_size, "zero_point": zero_point,
        "n_sample_token": n_sample_token, "n_grid": n_grid, "max_shrink": max_shrink,
        "tokens_used": feat.shape[1], "max_val": best_val.reshape(-1).tolist(),
        "best_index": best.reshape(-1).tolist(), "min_relative_margin": margin.item(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests", "data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(N_TOKENS, IN)
    x[:, OUTLIERS] *= 20
    w1 = torch.randn(OUT1, IN) * 0.05
    w2 = torch.randn(OUT2, IN) * 0.05

    golden = {
        "version": 1,
        "bin": "awq_search_golden.bin",
        "tensors": {"x": {"shape": [N_TOKENS, IN], "offset": 0},
                    "w1": {"shape": [OUT1, IN], "offset": N_TOKENS * IN},
                    "w2": {"shape": [OUT2, IN], "offset": N_TOKENS * IN + OUT1 * IN}},
        "outlier_channels": OUTLIERS,
        "scale_duo": scale_search(x, [w1, w2], 4, 16, True),
        "scale_noduo": scale_search(x, [w1, w2], 4, 16, False),
        "clip_a": dict(clip_search(w1, x, 4, 16, True, 512), weight="w1"),
        "clip_b": dict(clip_search(w2, x, 4, -1, False, 32), weight="w2"),
        "clip_c": dict(clip_search(w1, x, 3, 32, True, 100), weight="w1"),
    }
    with open(os.path.join(args.out_dir, "awq_search_golden.bin"), "wb") as f:
        for t in (x, w1, w2):
            f.write(t.contiguous().numpy().astype("<f4").tobytes())
    with open(os.path.join(args.out_dir, "awq_search_golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    for k in ("scale_duo", "scale_noduo"):
        g = golden[k]
        print(f"{k}: best ratio {g['best_index']}/{N_GRID} loss {g['losses'][g['best_index']]:.6g}"
              f" identity {g['identity_loss']:.6g} margin {g['min_relative_margin']:.3g}")
    for k in ("clip_a", "clip_b", "clip_c"):
        g = golden[k]
        shrunk = sum(1 for i in g["best_index"] if i > 0)
        print(f"{k}: {shrunk}/{len(g['best_index'])} groups clipped, tokens {g['tokens_used']},"
              f" margin {g['min_relative_margin']:.3g}")


if __name__ == "__main__":
    main()
