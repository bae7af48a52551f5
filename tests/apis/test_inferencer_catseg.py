"""The inferencer drives the CAT-Seg-style segmentor through the same path (runs once it is merged)."""
import numpy as np
import pytest
import torch
from PIL import Image

from declip_mm.apis import DeCLIPInferencer
from declip_mm.apis.inferencer import resolve_config
from declip_mm.testing import tiny_clip_config

CONFIG = 'catseg_declip-eva02-b16_ade20k-640x640'
HEAD = dict(embed_dims=16, appearance_guidance_dims=8, text_guidance_dims=8, num_layers=2,
            num_heads=2, window_size=4, pad_len=12, pool_size=2, decoder_channels=(16, 16),
            guidance_channels=(8, 8), guidance_proj_channels=(4, 4))

pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py



def tiny_catseg_opts():
    tiny = dict(tiny_clip_config('eva02'), _delete_=True)
    opts = {'model.backbone.model_name': tiny, 'model.text_encoder.model_name': tiny,
            'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None,
            'model.backbone.out_indices': (0, 1), 'model.test_cfg.size': 96,
            'model.test_cfg.crop_size': 64, 'model.test_cfg.stride': 32,
            'test_pipeline.1.scale': (4096, 64),
            'allow_untrained_head': True}   # a random head on purpose (else refused, issue 24.2)
    opts.update({f'model.decode_head.{k}': v for k, v in HEAD.items()})
    return opts


@pytest.fixture
def catseg():
    torch.manual_seed(0)
    return DeCLIPInferencer(CONFIG, cfg_options=tiny_catseg_opts())


def test_catseg_vocabulary_modes_and_checkpoint(catseg, tmp_path):
    from mmseg.apis import inference_model, init_model
    rng = np.random.default_rng(0)
    img = tmp_path / 'p.png'
    Image.fromarray((rng.random((64, 96, 3)) * 255).astype(np.uint8)).save(img)
    a = catseg(str(img), classes='cat; grass, lawn; sky')
    b = catseg(str(img), classes=[['dog'], ['road']])
    assert a.probs.shape == (3, 64, 96) and b.probs.shape == (2, 64, 96)
    cfg = resolve_config(CONFIG)
    cfg.merge_from_dict(tiny_catseg_opts())
    cfg.model.class_names = [['dog'], ['road']]
    ref = init_model(cfg, None, device='cpu')
    ref.load_state_dict(catseg.model.state_dict(), strict=False)
    np.testing.assert_allclose(b.probs, inference_model(ref, str(img)).seg_logits.data.numpy(),
                               atol=1e-5)
    whole = catseg(str(img), classes='cat; grass, lawn; sky', mode='whole')
    assert not np.allclose(whole.probs, a.probs) and catseg.model.mode == 'catseg'
    ckpt = tmp_path / 'catseg.pth'
    torch.save({'state_dict': catseg.model.state_dict(), 'meta': {}}, ckpt)
    torch.manual_seed(7)
    again = DeCLIPInferencer(CONFIG, cfg_options=tiny_catseg_opts(), checkpoint=str(ckpt))
    np.testing.assert_allclose(again(str(img), classes='cat; grass, lawn; sky').probs, a.probs,
                               atol=1e-6)
