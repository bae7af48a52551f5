"""The attention temperature τ an export was trained with is applied when it is loaded (issue 21 item 1).

DeCLIP's EVA training code and its CAT-Seg branch use τ = 1 (``eva_vit_model.py`` ``ss_attn``: the
scale is commented out). A declip_mm export stores its τ in ``meta['attn_scale']``; a config that leaves
``attn_scale`` unset ('auto') takes it, a config that sets another value keeps its own and warns. The
reference is the backbone built explicitly with ``attn_scale=1.0``.
"""
import pytest
import torch
from catseg_helpers import TINY_HEAD, catseg_config
from mmengine.config import Config

import declip_mm.models.backbones.declip_vit as declip_vit
from declip_mm.converters import save_checkpoint
from declip_mm.registry import MODELS
from declip_mm.testing import tiny_clip_config

pytestmark = pytest.mark.usefixtures('one_thread')

CATSEG_EVAL = 'catseg_declip-eva02-b16_ade20k-640x640.py'


def _export(tmp_path, tau, tiny=None, name='declip_epoch_1.pth'):
    """A tiny EVA02 student 'trained' with ``tau`` exported as the ExportHook does."""
    torch.manual_seed(1)
    student = MODELS.build(dict(type='DeCLIPVisionTransformer',
                                model_name=tiny or tiny_clip_config('eva02'),
                                attn_mode='csa', attn_scale=tau))
    for p in student.parameters():  # non-trivial attention maps: τ must matter
        p.data.add_(torch.randn_like(p) * 0.2)
    sd = {'visual.' + k: v for k, v in student.visual.state_dict().items()}
    path = str(tmp_path / name)
    save_checkpoint(path, sd, student.model_name, attn_mode='csa', attn_scale=student.attn_scale,
                    source='declip_mm')
    return path


def _catseg_cfg(export, **backbone):
    """The CAT-Seg evaluation config with tiny towers and head; the image tower from ``export``."""
    cfg = Config.fromfile(catseg_config(CATSEG_EVAL))
    tiny = tiny_clip_config('eva02')
    cfg.model.backbone.update(model_name=tiny, pretrained=export, out_indices=(0, 1), **backbone)
    cfg.model.text_encoder.update(model_name=tiny, pretrained=None)
    cfg.model.decode_head = dict(TINY_HEAD)
    cfg.model.class_names = ['cat', 'dog', 'sky']
    return cfg


def _segmentor(cfg):
    torch.manual_seed(0)  # the same text tower and head for every variant
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.double().eval()


@pytest.mark.parametrize('tau', [1.0, 0.5])
def test_catseg_config_evaluates_an_export_with_its_tau(tmp_path, tau):
    """tau = 1: DeCLIP's exports; 0.5: any other stored value is applied too (not the default)."""
    export = _export(tmp_path, tau)
    cfg = _catseg_cfg(export)
    assert 'attn_scale' not in cfg.model.backbone  # the config leaves tau to the export
    got = _segmentor(cfg)
    assert got.backbone.attn_scale == tau and got.backbone.attn_scale_source == 'checkpoint'
    ref = _segmentor(_catseg_cfg(export, attn_scale=tau))
    inv_sqrt_d = _segmentor(_catseg_cfg(export, attn_scale=None))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        out, want, other = (m._head_logits(x) for m in (got, ref, inv_sqrt_d))
        content = got.backbone(x)['content']
        content_ref = ref.backbone(x)['content']
    torch.testing.assert_close(content, content_ref, rtol=0, atol=0)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    assert (out - other).abs().max() > 1e-4  # tau matters at these weights


def test_stored_tau_wins_over_the_default_and_a_set_tau_warns(tmp_path, monkeypatch):
    logs = []
    monkeypatch.setattr(declip_vit, 'print_log',
                        lambda msg, logger=None, level=None: logs.append((msg, level)))
    export = _export(tmp_path, 0.25)
    tiny = tiny_clip_config('eva02')

    def backbone(**kw):
        m = MODELS.build(dict(type='DeCLIPVisionTransformer', model_name=tiny, pretrained=export,
                              attn_mode='csa', **kw))
        m.init_weights()
        return m
    assert backbone().attn_scale == 0.25                          # auto, no default
    assert backbone(default_attn_scale=1.0).attn_scale == 0.25    # auto: stored beats the default
    logs.clear()
    explicit = backbone(attn_scale=0.5)
    assert explicit.attn_scale == 0.5 and explicit.attn_scale_source == 'config'
    warn = [m for m, lvl in logs if lvl is not None and lvl >= 30 and 'attention scale' in m]
    assert len(warn) == 1 and '0.25' in warn[0] and '0.5' in warn[0]
    logs.clear()
    backbone(attn_scale=0.25)  # the same value: no warning
    assert not [m for m, lvl in logs if lvl is not None and lvl >= 30 and 'attention scale' in m]


def test_without_a_stored_tau_the_default_applies(tmp_path):
    torch.manual_seed(1)
    tiny = tiny_clip_config('eva02')
    tower = MODELS.build(dict(type='DeCLIPVisionTransformer', model_name=tiny))
    path = str(tmp_path / 'clip.pth')
    save_checkpoint(path, {'visual.' + k: v for k, v in tower.visual.state_dict().items()},
                    tower.model_name)  # meta attn_scale None: an original CLIP / a release
    head_dim = tower.head_dim

    def build(**kw):
        m = MODELS.build(dict(type='DeCLIPVisionTransformer', model_name=tiny, pretrained=path, **kw))
        m.init_weights()
        return m
    assert build().attn_scale == pytest.approx(head_dim ** -0.5)
    assert build(default_attn_scale=1.0).attn_scale == 1.0
    assert build(attn_scale=None).attn_scale == pytest.approx(head_dim ** -0.5)
    with pytest.raises(ValueError, match="attn_scale must be a number, None"):
        build(attn_scale='checkpoint')
    with pytest.raises(ValueError, match='must be positive'):
        build(attn_scale=0.0)


@pytest.mark.parametrize('name', ['catseg_declip-eva02-b16_ade20k-640x640.py',
                                  'catseg_declip-eva02-l14-336_context59-640x640.py',
                                  'catseg_declip-eva02-b16_1xb4-80k_coco-stuff164k-384x384.py'])
def test_eva_catseg_configs_leave_tau_to_the_export_with_public_default(name):
    cfg = Config.fromfile(catseg_config(name))
    assert 'attn_scale' not in cfg.model.backbone and cfg.model.backbone.default_attn_scale == 1.0


def test_detection_config_leaves_tau_to_the_export(tmp_path):
    from fvit_helpers import FVIT_CONFIG
    cfg = Config.fromfile(FVIT_CONFIG)
    bb = dict(cfg.model.backbone)
    assert 'attn_scale' not in bb and bb['default_attn_scale'] == 1.0
    tiny = tiny_clip_config('eva02', depth=4, patch_size=16)
    bb.update(model_name=tiny, pretrained=_export(tmp_path, 0.7, tiny), out_indices=(0, 1, 2, -1),
              frozen_stages=4)
    bb['type'] = 'DeCLIPVisionTransformer'
    m = MODELS.build(bb)
    m.init_weights()
    assert m.attn_scale == 0.7
