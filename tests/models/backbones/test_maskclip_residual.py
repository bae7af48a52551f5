"""``maskclip_residual='cls'``: KU-CVLAB CAT-Seg's OpenAI dense path, against a float64 transcription.

KU-CVLAB/CAT-Seg ``cat_seg/third_party/model_vpt.py`` ``ResidualAttentionBlock.forward_dense`` (last
block, ``dense=True``): ``y = in_proj(ln_1(x))``; ``out_proj`` applied to the value rows;
``v = v + x[:1]`` (the class token's residual for every token); ``v = v + mlp(ln_2(v))``; then
``ln_post`` and ``@ proj`` on every token. Blocks before the last are the unchanged open_clip blocks.
"""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from declip_mm.models import DeCLIPVisionTransformer
from declip_mm.testing.tiny_models import tiny_clip_config


def _ln(x, mod):
    return F.layer_norm(x, mod.normalized_shape, mod.weight, mod.bias, mod.eps)


def ku_forward_dense(backbone, x):
    """(B, E, h, w) content of the public dense forward, float64, at the tower's native grid."""
    v = copy.deepcopy(backbone.visual).double().eval()
    x = x.double()
    p = F.conv2d(x, v.conv1.weight, None, stride=v.conv1.stride)
    B, _, h, w = p.shape
    tok = p.flatten(2).transpose(1, 2)
    X = torch.cat([v.class_embedding.reshape(1, 1, -1).expand(B, -1, -1), tok], 1)
    X = _ln(X + v.positional_embedding, v.ln_pre)
    blocks = list(v.transformer.resblocks)
    for blk in blocks[:-1]:
        X = blk(X)
    blk = blocks[-1]
    D = X.shape[-1]
    y = _ln(X, blk.ln_1) @ blk.attn.in_proj_weight.T + blk.attn.in_proj_bias
    val = y[..., 2 * D:] @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
    val = val + X[:, :1]                       # v.transpose(1, 0) + x[:1]
    hid = _ln(val, blk.ln_2) @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias
    hid = hid * torch.sigmoid(1.702 * hid) if backbone.quick_gelu else F.gelu(hid)
    val = val + hid @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias
    out = _ln(val[:, 1:], v.ln_post) @ v.proj
    return out.transpose(1, 2).reshape(B, -1, h, w)


@pytest.mark.parametrize('batch,quick_gelu', [(1, True), (2, False)])
def test_cls_residual_equals_public_forward_dense(batch, quick_gelu):
    torch.manual_seed(batch)
    bb = DeCLIPVisionTransformer(tiny_clip_config('openai'), attn_mode='maskclip',
                                 maskclip_residual='cls', quick_gelu=quick_gelu).eval()
    for p in bb.parameters():                  # no zero biases / unit norms hiding a term
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.randn(batch, 3, 32, 32)
    ref = ku_forward_dense(bb, x)
    with torch.no_grad():
        got = copy.deepcopy(bb).double()(x.double())['content']
    assert torch.allclose(got, ref, atol=1e-10, rtol=0), (got - ref).abs().max()
    # the default (each token's own residual) is a different function
    own = DeCLIPVisionTransformer(tiny_clip_config('openai'), attn_mode='maskclip',
                                  quick_gelu=quick_gelu).eval()
    own.load_state_dict(bb.state_dict())
    with torch.no_grad():
        other = copy.deepcopy(own).double()(x.double())['content']
    assert (other - ref).abs().max() > 1e-3


def test_cls_residual_needs_maskclip_and_one_class_token():
    with pytest.raises(ValueError, match="needs attn_mode='maskclip'"):
        DeCLIPVisionTransformer(tiny_clip_config('openai'), attn_mode='csa', maskclip_residual='cls')
    with pytest.raises(ValueError, match="'token' or 'cls'"):
        DeCLIPVisionTransformer(tiny_clip_config('openai'), attn_mode='maskclip',
                                maskclip_residual='CLS')


def test_openai_catseg_configs_use_the_public_dense_path():
    root = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    cfg = Config.fromfile(osp.join(root, 'configs/_base_/models/catseg_openai-vitb16.py'))
    assert cfg.model.backbone.attn_mode == 'maskclip'
    assert cfg.model.backbone.maskclip_residual == 'cls'
