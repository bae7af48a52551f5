"""Issue 22.8: every shipped config's model builds (its types, arguments and channel numbers fit),
with tiny random towers standing in for the released CLIP / VFM weights.

Only the towers are made tiny (the CLIP towers' ``model_name``, the VFM teachers'
``arch_overrides``, no weight files) and the numbers that follow from the tower width are adjusted
(``out_indices``, a neck's ``in_channels``, the CAT-Seg head's channels, as
``tools/make_tiny_towers.py`` does); every other key is the config's own. Configs that define no
model, and the ``_base_`` fragments (completed by the configs inheriting them), are skipped with
that reason.
"""
import glob
import os.path as osp

import pytest
import torch
from catseg_helpers import TINY_HEAD
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

from declip_mm.testing import tiny_clip_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                                                         recursive=True))
TINY_DEPTH = 3
TINY_WIDTH, TINY_EMBED = 64, 32        # tiny_clip_config's vision width and embedding size
#: tiny VFM teachers (the DINOv2 one is configs/declip/declip_tiny-random_quickstart.py's)
TINY_VFM = {'timm': dict(embed_dim=48, depth=2, num_heads=2, img_size=56),
            'sam': dict(embed_dim=48, depth=2, num_heads=2, img_size=64, window_size=4,
                        global_attn_indexes=(1, ))}


def _family(name) -> str:
    return 'openai' if isinstance(name, str) and name.startswith('ViT-') else 'eva02'


def _tiny_tower(node) -> None:
    """A tiny tower of the same family, deep enough for the tapped blocks: n tapped blocks become
    blocks 0..n-1 (count and order kept; -1, the content map, stays), with a block to spare when
    the content map is tapped too (the last block may only be tapped as the content map)."""
    indices = node.get('out_indices')
    depth = TINY_DEPTH
    if isinstance(indices, (list, tuple)):
        blocks = [i for i in indices if i >= 0]
        depth = max(TINY_DEPTH, len(blocks) + (-1 in indices))
        it = iter(range(len(blocks)))
        node['out_indices'] = type(indices)(next(it) if i >= 0 else i for i in indices)
    elif isinstance(indices, int) and indices >= 0:
        node['out_indices'] = min(indices, TINY_DEPTH - 1)
    family = _family(node['model_name'])
    node['model_name'] = tiny_clip_config(family, **{'depth' if family == 'eva02' else 'layers':
                                                     depth})
    node['pretrained'] = None


def _tinify(node):
    """Tiny towers in place: every dict with a CLIP ``model_name`` or a VFM ``arch``."""
    from declip_mm.models.backbones.vfm_teacher import VFM_ARCHS
    if isinstance(node, list):
        for item in node:
            _tinify(item)
        return
    if not isinstance(node, dict):
        return
    if 'model_name' in node:
        _tiny_tower(node)
    if node.get('arch') in VFM_ARCHS:
        kind = 'sam' if 'sam' in VFM_ARCHS[node['arch']] else 'timm'
        node['arch_overrides'] = dict(TINY_VFM[kind])
        node['pretrained'] = None
    for value in node.values():
        _tinify(value)


#: vision width of the timm trunks of open_clip's EVA02 configs (timm's eva.py)
TIMM_WIDTH = {'eva02_base_patch16_clip_224': 768, 'eva02_large_patch14_clip_224': 1024,
              'eva02_large_patch14_clip_336': 1024}


def _real_channels(model_name: str, indices) -> list:
    """Channels of each tapped output of the released tower: the width, or the embedding size for
    -1 (the content map), from open_clip's model config."""
    import open_clip
    real = open_clip.get_model_config(model_name)
    vision = real['vision_cfg']
    width = vision.get('width') or TIMM_WIDTH[vision['timm_model_name']]
    return [real['embed_dim'] if i == -1 else width for i in indices]


def _fit_channels(model: dict, real_backbone: dict) -> None:
    """The numbers that follow from the tower width (as tools/make_tiny_towers.py sets them); a
    neck's ``in_channels`` must first equal the released tower's, tapped output by tapped output."""
    backbone = model.get('backbone') or {}
    neck = model.get('neck')
    if isinstance(neck, dict) and isinstance(neck.get('in_channels'), (list, tuple)) \
            and backbone.get('out_indices') is not None:
        assert list(neck['in_channels']) == _real_channels(real_backbone['model_name'],
                                                           real_backbone['out_indices'])
        neck['in_channels'] = [TINY_EMBED if i == -1 else TINY_WIDTH
                               for i in backbone['out_indices']]
    head = model.get('decode_head')
    if isinstance(head, dict) and head.get('type') == 'DeCLIPCATSegHead':
        head.update({k: v for k, v in TINY_HEAD.items() if k != 'type'}, pad_len=0)
        backbone['out_indices'] = (0, 1)


def _tiny_model_cfg(path: str):
    cfg = Config.fromfile(osp.join(ROOT, path))
    if cfg.get('model') is None:
        return cfg, None
    model = cfg.model   # a ConfigDict: mmdet reads train_cfg.rpn as an attribute
    if path.startswith('configs/detection/'):   # the F-ViT child the tests and tools use
        return cfg, 'fvit'
    real_backbone = dict(model.get('backbone') or {})
    _tinify(model)
    _fit_channels(model, real_backbone)
    return cfg, model


def _fvit_model(tmp_path, path):
    from declip_mm.testing.fvit_config import tiny_fvit_config_text
    child = tmp_path / 'tiny_fvit.py'
    tiny = dict(tiny_clip_config('eva02', depth=4, patch_size=16), _delete_=True)
    child.write_text(tiny_fvit_config_text(osp.join(ROOT, path), tiny, None, str(tmp_path)))
    return Config.fromfile(str(child)).model


@pytest.mark.parametrize('path', CONFIGS)
def test_config_model_builds(path, tmp_path, one_thread):
    cfg, model = _tiny_model_cfg(path)
    if model is None:
        pytest.skip('defines no model')
    if path.startswith('configs/_base_/'):
        pytest.skip('a _base_ fragment (its class names come from the configs inheriting it): '
                    'built through those configs')
    if model == 'fvit':
        model = _fvit_model(tmp_path, path)
    scope = cfg.get('default_scope', 'mmseg')
    pytest.importorskip(scope)
    import declip_mm  # noqa: F401  (the config's custom_imports)
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    torch.manual_seed(0)
    try:
        built = registry.build(model)
    finally:
        DefaultScope._instance_dict.pop(scope, None)
        init_default_scope('mmseg')
    assert isinstance(built, torch.nn.Module) and type(built).__name__ == model['type']
    backbone = getattr(built, 'backbone', None) or getattr(built, 'student', None)
    want = (model.get('backbone') or model.get('student') or {}).get('attn_mode')
    if want is not None:   # the tower runs the configured attention mode
        assert backbone.attn_mode == want
