"""configs/detection/fvit_declip-eva02-b16_ov-coco.py against CLIPSelf's F-ViT recipe (issue 21 item 5;
``F-ViT/configs/ov_coco/fvit_vitb16_upsample_fpn_bs64_3e_ovcoco_eva_original.py``):

* ``Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)`` -- ImageNet's;
* training ``Pad(size=(640, 640))``, test ``Pad(pad_to_square=True)``, both after the normalisation
  (so the padding is 0 in normalised units);
* class embeddings from the 63 templates of ``F-ViT/tools/clip_utils.py`` (``multiple_templates``);
* ``fp16 = dict(loss_scale=512.0)``.
The padding is checked by running the configured preprocessor on images against a float64 reference.
"""
import pytest
import torch
from fvit_helpers import FVIT_CONFIG
from mmengine.config import Config
from mmengine.registry import init_default_scope

from declip_mm.models.text.templates import fill_template, get_templates

IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]


@pytest.fixture(scope='module')
def cfg():
    return Config.fromfile(FVIT_CONFIG)


def _preprocessor(cfg):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    return MODELS.build(cfg.model.data_preprocessor)


def _data(sizes):
    from mmdet.structures import DetDataSample
    torch.manual_seed(0)
    imgs = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in sizes]
    samples = [DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w))) for h, w in sizes]
    return imgs, dict(inputs=imgs, data_samples=samples)


def _reference(imgs, size):
    """Normalise (BGR -> RGB, ImageNet statistics) in float64, then zero-pad to ``size``."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)[:, None, None]
    out = torch.zeros(len(imgs), 3, *size, dtype=torch.float64)
    for i, img in enumerate(imgs):
        x = (img.flip(0).double() - mean) / std
        out[i, :, :x.shape[1], :x.shape[2]] = x
    return out


def test_pixel_statistics_are_imagenet(cfg):
    dp = cfg.model.data_preprocessor
    assert dp.mean == IMAGENET_MEAN and dp.std == IMAGENET_STD and dp.bgr_to_rgb


def test_training_batches_are_padded_to_640(cfg):
    pre = _preprocessor(cfg)
    imgs, data = _data([(300, 200), (256, 352)])
    out = pre(data, training=True)
    assert out['inputs'].shape == (2, 3, 640, 640)
    torch.testing.assert_close(out['inputs'].double(), _reference(imgs, (640, 640)),
                               rtol=1e-6, atol=1e-5)
    assert all(s.batch_input_shape == (640, 640) for s in out['data_samples'])


@pytest.mark.parametrize('hw', [(427, 640), (640, 480), (200, 96)])
def test_test_images_are_padded_to_a_square(cfg, hw):
    pre = _preprocessor(cfg)
    imgs, data = _data([hw])
    out = pre(data, training=False)
    side = max(-(-hw[0] // 32) * 32, -(-hw[1] // 32) * 32)  # the longer side (a multiple of 32)
    assert out['inputs'].shape == (1, 3, side, side)
    torch.testing.assert_close(out['inputs'].double(), _reference(imgs, (side, side)),
                               rtol=1e-6, atol=1e-5)
    assert out['data_samples'][0].batch_input_shape == (side, side)
    assert out['data_samples'][0].img_shape == hw


def test_class_embeddings_use_the_63_hand_crafted_templates(cfg):
    text = cfg.model.roi_head.bbox_head.text_encoder
    assert text.templates == 'vild_hand_craft'
    templates = get_templates(text.templates)
    assert len(templates) == 63
    # CLIPSelf's rule on the filled prompt: article by the first letter, 'This is ' before a/the
    assert fill_template(templates[0], 'umbrella') == 'There is an umbrella in the scene.'
    assert fill_template(templates[2], 'dog') == 'This is a photo of a dog in the scene.'
    assert fill_template(templates[-1], 'cat') == 'This is a painting of a cat.'


def test_fp16_training_with_static_loss_scale_512(cfg):
    from mmengine.optim import AmpOptimWrapper
    from mmengine.registry import OPTIM_WRAPPERS
    ow = cfg.optim_wrapper
    assert OPTIM_WRAPPERS.get(ow.type) is AmpOptimWrapper and ow.loss_scale == 512.0
    assert ow.clip_grad == dict(max_norm=1.0, norm_type=2)
    assert ow.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1)
