"""Float64 references written straight from docs/method.md §1 (explicit softmax matrices, no SDPA).

Only the unchanged blocks 0..L-2 are run through open_clip / timm's own block modules; the embedding,
position-embedding resize, RoPE, the decoupled last block, the final norm and the projection are
re-derived here from the formulas.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def official_rope(h: int, w: int, head_dim: int, ref: float = 16.0, theta: float = 10000.0):
    """EVA02 VisionRotaryEmbeddingFast, generalised per axis: returns (cos, sin), each (h*w, d)."""
    dim = head_dim // 2
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64)[:dim // 2] / dim))
    fh = (torch.arange(h, dtype=torch.float64) / h * ref)[:, None] * freqs  # (h, d/4)
    fw = (torch.arange(w, dtype=torch.float64) / w * ref)[:, None] * freqs
    fh = fh.repeat_interleave(2, -1)
    fw = fw.repeat_interleave(2, -1)
    f = torch.cat([fh[:, None, :].expand(h, w, -1), fw[None, :, :].expand(h, w, -1)], -1)
    f = f.reshape(h * w, head_dim)
    return f.cos(), f.sin()


def rotate_half_interleaved(x):
    x = x.reshape(*x.shape[:-1], -1, 2)
    x1, x2 = x.unbind(-1)
    return torch.stack((-x2, x1), -1).flatten(-2)


def _ln(x, mod):
    return F.layer_norm(x, mod.normalized_shape, mod.weight, mod.bias, mod.eps)


def _softmax_attn(a, b, scale):
    return torch.softmax(scale * a @ b.transpose(-2, -1), dim=-1)


def reference_forward(backbone, x: torch.Tensor):
    """Float64 reference of ``DeCLIPVisionTransformer.forward`` (content, context_q, context_k).

    With ``decouple_last`` = k > 1 also the side outputs of blocks L-k .. L-2 (docs/method.md §6):
    ``context_q_blocks`` / ``context_k_blocks`` (Q, K of LN1 of the block's input) and
    ``content_blocks`` (X' = X + out-proj(A·V), then X' + FFN(X')); the main path is unchanged.
    """
    bb = copy.deepcopy(backbone).double().eval()
    x = x.double()
    mode = bb.attn_mode
    v = bb.visual
    eva = bb.family == 'eva02'
    # --- embedding (formula): conv patchify, CLS, bicubic (no antialias) position embedding
    if eva:
        t = v.trunk
        conv, cls, pos, g0 = t.patch_embed.proj, t.cls_token.reshape(1, 1, -1), t.pos_embed[0], \
            t.patch_embed.grid_size
    else:
        conv, cls, pos, g0 = v.conv1, v.class_embedding.reshape(1, 1, -1), v.positional_embedding, \
            v.grid_size
    p = F.conv2d(x, conv.weight, conv.bias, stride=conv.stride)
    h, w = p.shape[-2:]
    tok = p.flatten(2).transpose(1, 2)
    grid = pos[1:].reshape(1, g0[0], g0[1], -1).permute(0, 3, 1, 2)
    if (h, w) != tuple(g0):
        grid = F.interpolate(grid, size=(h, w), mode='bicubic', align_corners=False, antialias=False)
    grid = grid.permute(0, 2, 3, 1).reshape(h * w, -1)
    pos = torch.cat([pos[:1], grid], 0)
    X = torch.cat([cls.expand(x.shape[0], -1, -1), tok], 1) + pos
    if not eva:
        X = _ln(X, v.ln_pre)
        blocks = list(v.transformer.resblocks)
        rope = None
    else:
        blocks = list(t.blocks)
        hd = bb.head_dim
        cos, sin = official_rope(h, w, hd)
        rope = torch.cat([sin, cos], -1)  # timm's concatenated layout for its unchanged blocks
    L, k_dec = len(blocks), getattr(bb, 'decouple_last', 1)
    sides = []
    for i, blk_i in enumerate(blocks[:-1]):
        if i >= L - k_dec:
            sides.append(_decoupled_block(blk_i, X, rope, bb, keep_residual_ffn=True))
        X = blk_i(X, rope=rope) if eva else blk_i(X)
    Q, K, out = _decoupled_block(blocks[-1], X, rope, bb, keep_residual_ffn=False)
    B, T, D = Q.shape
    # --- final norm + projection on patch rows
    pt = out[:, 1:]
    if eva:
        content = _ln(pt, t.norm) @ t.head.weight.T + t.head.bias
    else:
        content = _ln(pt, v.ln_post) @ v.proj

    def as_map(z):
        return z.transpose(1, 2).reshape(B, z.shape[-1], h, w)

    res = {'content': as_map(content), 'context_q': as_map(Q[:, 1:])}
    if mode in ('kk', 'csa'):
        res['context_k'] = as_map(K[:, 1:])
    if k_dec > 1:
        res['context_q_blocks'] = [as_map(s[0][:, 1:]) for s in sides]
        res['content_blocks'] = [as_map(s[2][:, 1:]) for s in sides]
        if mode in ('kk', 'csa'):
            res['context_k_blocks'] = [as_map(s[1][:, 1:]) for s in sides]
    return res


def _decoupled_block(blk, X, rope, bb, keep_residual_ffn: bool):
    """One decoupled block from the formula: returns (Q, K, output tokens), all (B, T, D).

    ``keep_residual_ffn=False`` is the paper's last block (A·V through the output path only);
    ``True`` keeps the block's residual and FFN (earlier decoupled blocks, decouple_last > 1).
    """
    mode, tau, H = bb.attn_mode, bb.attn_scale, bb.num_heads
    eva = bb.family == 'eva02'
    if eva:
        a = blk.attn
        Y = _ln(X, blk.norm1)
        Q = Y @ a.q_proj.weight.T + a.q_proj.bias
        K = Y @ a.k_proj.weight.T
        V = Y @ a.v_proj.weight.T + a.v_proj.bias
    else:
        Y = _ln(X, blk.ln_1)
        W, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
        D = W.shape[1]
        Q = Y @ W[:D].T + b[:D]
        K = Y @ W[D:2 * D].T + b[D:2 * D]
        V = Y @ W[2 * D:].T + b[2 * D:]
    B, T, D = Q.shape

    def heads(z):
        return z.reshape(B, T, H, D // H).transpose(1, 2)

    q, k, vv = heads(Q), heads(K), heads(V)

    def out_proj(o):
        o = o.transpose(1, 2).reshape(B, T, D)
        if eva:
            o = _ln(o, blk.attn.norm)
            o = o @ blk.attn.proj.weight.T + blk.attn.proj.bias
            return o if blk.gamma_1 is None else o * blk.gamma_1
        return o @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias

    def ffn(z):
        if eva:
            m = blk.mlp(_ln(z, blk.norm2))
            return z + (m if blk.gamma_2 is None else blk.gamma_2 * m)
        return z + blk.mlp(_ln(z, blk.ln_2))

    if mode == 'vanilla':
        if eva:
            cos_, sin_ = rope[:, rope.shape[1] // 2:], rope[:, :rope.shape[1] // 2]
            qr = torch.cat([q[:, :, :1], q[:, :, 1:] * cos_ + rotate_half_interleaved(q[:, :, 1:]) * sin_], 2)
            kr = torch.cat([k[:, :, :1], k[:, :, 1:] * cos_ + rotate_half_interleaved(k[:, :, 1:]) * sin_], 2)
        else:
            qr, kr = q, k
        out = ffn(X + out_proj(_softmax_attn(qr, kr, 1 / math.sqrt(D // H)) @ vv))
    elif mode == 'maskclip':
        out = ffn(X + out_proj(vv))
    else:
        A = {'qq': lambda: _softmax_attn(q, q, tau), 'kk': lambda: _softmax_attn(k, k, tau),
             'csa': lambda: _softmax_attn(q, q, tau) + _softmax_attn(k, k, tau)}[mode]()
        out = out_proj(A @ vv)
        if keep_residual_ffn:
            out = ffn(X + out)
    return Q, K, out


def reference_class_embeddings(encode_text, tokenizer, names, templates):
    """Prompt ensembling from the CLIP paper: mean of normalised template embeddings, renormalised."""
    out = []
    for n in names:
        e = F.normalize(encode_text(tokenizer([t.format(n) for t in templates])).double(), dim=-1)
        out.append(F.normalize(e.mean(0), dim=-1))
    return torch.stack(out)
