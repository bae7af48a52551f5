"""DeCLIPInferencer(vfm=...): a training-free config runs ProxyCLIP's proxy attention with a local VFM
file (docs/method.md §7)."""
import numpy as np
import pytest
import timm
import torch

from declip_mm.apis import DeCLIPInferencer
from declip_mm.testing import tiny_clip_config
from declip_mm.testing.proxyclip_public import TINY_VFMS


def tiny_opts():
    tiny = dict(tiny_clip_config('eva02'), _delete_=True)
    return {'model.backbone.model_name': tiny, 'model.text_encoder.model_name': tiny,
            'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None,
            'model.text_encoder.templates': 'single', 'model.test_cfg.crop_size': 64,
            'model.test_cfg.stride': 48, 'test_pipeline.1.scale': (4096, 72)}


def test_vfm_file_switches_to_proxy_and_loads_it(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dino = timm.create_model('vit_base_patch8_224.dino', pretrained=False, num_classes=0,
                             **TINY_VFMS['dino_vitb8'])
    path = tmp_path / 'tiny_dino_b8.pth'
    torch.save(dino.state_dict(), path)
    vfm = dict(arch='dino_vitb8', pretrained=str(path), arch_overrides=TINY_VFMS['dino_vitb8'])
    torch.manual_seed(1)
    inf = DeCLIPInferencer(cfg_options=tiny_opts(), device='cpu', vfm=vfm)
    seg = inf.model
    assert type(seg).__name__ == 'DeCLIPProxySegmentor' and seg.backbone.attn_mode == 'proxy'
    got = seg.vfm.tower.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in dino.state_dict().items())
    img = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    res = inf(img, classes='sky; grass; road')
    torch.manual_seed(1)
    plain = DeCLIPInferencer(cfg_options=tiny_opts(), device='cpu')
    plain.model.load_state_dict(seg.state_dict(), strict=False)   # same CLIP / text weights
    ref = plain(img, classes='sky; grass; road')
    assert res.probs.shape == ref.probs.shape == (3, 60, 80)
    assert np.abs(res.probs - ref.probs).max() > 1e-3   # the proxy mode is what ran


def test_missing_vfm_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='VFM checkpoint'):
        DeCLIPInferencer(cfg_options=tiny_opts(), device='cpu', vfm=str(tmp_path / 'none.pth'))
