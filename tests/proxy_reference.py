"""Float64 transcription of ProxyCLIP's proxy attention (docs/method.md §7), written from the formula.

Explicit N x N matrices, an explicit bilinear-resize matrix (half-pixel centres, clamped borders,
no ``F.interpolate``), loops where the formula has them. The unchanged blocks 0..L-2 come from a
float64 copy of the backbone (their parity is pinned by tests/declip_reference.py).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

BETA, GAMMA = 1.2, 3.0  # the paper's / public code's values


def bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of 1-D linear resampling, align_corners=False: x = (i+0.5)·n_in/n_out - 0.5
    clamped at 0, neighbours floor(x) and floor(x)+1 (clamped to n_in-1)."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        x = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        x0 = min(int(math.floor(x)), n_in - 1)
        x1 = min(x0 + 1, n_in - 1)
        t = x - x0
        m[i, x0] += 1 - t
        m[i, x1] += t
    return m


def reference_proxy_weights(feats: torch.Tensor, beta: float = BETA, gamma: float = GAMMA):
    """(B, N, N): per window, cosine S of the VFM tokens, (S - beta·mean(S))·gamma, entries < 0 out,
    row softmax written as exp / sum."""
    out = []
    for f in feats.double():
        c, hh, ww = f.shape
        t = f.reshape(c, hh * ww).t()
        t = t / t.norm(dim=1, keepdim=True)
        s = t @ t.t()
        s = (s - beta * s.sum() / s.numel()) * gamma
        keep = s >= 0
        e = torch.where(keep, torch.exp(s), torch.zeros_like(s))
        out.append(e / e.sum(dim=1, keepdim=True))
    return torch.stack(out)


def reference_resize_values(v: torch.Tensor, clip_hw, vfm_hw) -> torch.Tensor:
    """(B, h·w, D) -> (B, H·W, D) by the separable bilinear matrices."""
    b, n, d = v.shape
    my = bilinear_matrix(clip_hw[0], vfm_hw[0])
    mx = bilinear_matrix(clip_hw[1], vfm_hw[1])
    g = v.double().reshape(b, clip_hw[0], clip_hw[1], d)
    g = torch.einsum('Yy,byxd,Xx->bYXd', my, g, mx)
    return g.reshape(b, vfm_hw[0] * vfm_hw[1], d)


def reference_proxy_content(backbone, x: torch.Tensor, feats: torch.Tensor, beta: float = BETA,
                            gamma: float = GAMMA) -> torch.Tensor:
    """Float64 content map (B, E, H, W) of ``attn_mode='proxy'``."""
    bb = copy.deepcopy(backbone).double().eval()
    x = x.double()
    ops = bb.ops
    tokens, hw = ops.embed(x)
    rope = ops.rope(hw, tokens)
    blocks = ops.blocks()
    for blk in list(blocks)[:-1]:
        tokens = ops.run_block(blk, tokens, rope)
    blk = blocks[-1]
    npt = ops.num_prefix_tokens
    if bb.family == 'eva02':
        a = blk.attn
        y = F.layer_norm(tokens, blk.norm1.normalized_shape, blk.norm1.weight, blk.norm1.bias,
                         blk.norm1.eps)
        v = y @ a.v_proj.weight.T + a.v_proj.bias
    else:
        y = F.layer_norm(tokens, blk.ln_1.normalized_shape, blk.ln_1.weight, blk.ln_1.bias,
                         blk.ln_1.eps)
        w, bias = blk.attn.in_proj_weight, blk.attn.in_proj_bias
        d = w.shape[1]
        v = y @ w[2 * d:].T + bias[2 * d:]
    vfm_hw = tuple(feats.shape[-2:])
    vr = reference_resize_values(v[:, npt:], hw, vfm_hw)
    o = reference_proxy_weights(feats, beta, gamma) @ vr
    if bb.family == 'eva02':
        n = blk.attn.norm
        o = F.layer_norm(o, n.normalized_shape, n.weight, n.bias, n.eps)
        o = o @ blk.attn.proj.weight.T + blk.attn.proj.bias
        o = o if blk.gamma_1 is None else o * blk.gamma_1
        t = bb.visual.trunk
        o = F.layer_norm(o, t.norm.normalized_shape, t.norm.weight, t.norm.bias, t.norm.eps)
        content = o @ t.head.weight.T + t.head.bias
    else:
        o = o @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
        lp = bb.visual.ln_post
        content = F.layer_norm(o, lp.normalized_shape, lp.weight, lp.bias, lp.eps) @ bb.visual.proj
    b = x.shape[0]
    return content.transpose(1, 2).reshape(b, -1, *vfm_hw)
