"""The web page with ``--vfm``: ProxyCLIP's proxy attention (docs/method.md §7), the same result as
``DeCLIPInferencer(vfm=...)`` on the same weights, and the page says which attention runs."""
import base64
import io

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from tf_helpers import load_tool

from declip_mm.apis import DeCLIPInferencer
from declip_mm.apis.result_files import read_label_png
from declip_mm.testing.proxyclip_public import TINY_VFMS

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py
web_demo = load_tool('web_demo')
FAST = ['test_pipeline.1.scale=(4096,64)', 'model.test_cfg.crop_size=64',
        'model.test_cfg.stride=48']


@pytest.fixture
def dino_file(tmp_path):
    torch.manual_seed(0)
    dino = timm.create_model('vit_base_patch8_224.dino', pretrained=False, num_classes=0,
                             **TINY_VFMS['dino_vitb8'])
    path = tmp_path / 'tiny_dino_b8.pth'
    torch.save(dino.state_dict(), path)
    return path, dino.state_dict()


def data_url(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format='PNG')
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()


def test_vfm_flag_runs_the_proxy_attention(dino_file, monkeypatch):
    path, state = dino_file
    # the tiny DINO's shape: the arch's overrides reach ProxyVFM through the inferencer's dict form
    real = DeCLIPInferencer.__init__

    def tiny_vfm(self, *a, vfm=None, vfm_arch='dino_vitb8', **kw):
        if vfm is not None:
            vfm = dict(arch=vfm_arch, pretrained=str(vfm), arch_overrides=TINY_VFMS[vfm_arch])
        real(self, *a, vfm=vfm, vfm_arch=vfm_arch, **kw)

    monkeypatch.setattr(DeCLIPInferencer, '__init__', tiny_vfm)
    torch.manual_seed(1)
    app = web_demo.build_app(web_demo.parse_args(
        ['--random-weights', '--vfm', str(path), '--vfm-arch', 'dino_vitb8', '--cfg-options', *FAST]))
    seg = app.inferencer.model
    assert type(seg).__name__ == 'DeCLIPProxySegmentor' and seg.backbone.attn_mode == 'proxy'
    got = seg.vfm.tower.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())    # the file the page was given
    info = app.info()
    assert info['attention'] == 'proxy' and info['vfm'] == 'dino_vitb8'

    img = np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    out = app.segment(dict(image=data_url(img), classes='sky; grass; road'))
    res = app.inferencer(img, classes=['sky', 'grass', 'road'])
    # the same labels as the inferencer on the same weights, and not what csa gives on them
    png, _ = app.download(out['id'], 'labels.png')
    assert np.array_equal(read_label_png(io.BytesIO(png)), res.labels)
    plain_app = web_demo.build_app(web_demo.parse_args(['--random-weights', '--cfg-options', *FAST]))
    plain_app.inferencer.model.load_state_dict(seg.state_dict(), strict=False)
    assert plain_app.info()['attention'] != 'proxy' and plain_app.info()['vfm'] == ''
    ref = plain_app.inferencer(img, classes=['sky', 'grass', 'road'])
    assert np.abs(res.probs - ref.probs).max() > 1e-3


def test_missing_vfm_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='VFM checkpoint'):
        web_demo.build_app(web_demo.parse_args(
            ['--random-weights', '--vfm', str(tmp_path / 'none.pth'), '--cfg-options', *FAST]))
