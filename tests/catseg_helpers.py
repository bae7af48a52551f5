"""Shared set-up of the CAT-Seg-style head tests: tiny head / segmentor configs, tools options."""
import glob
import json
import os.path as osp

from declip_mm.testing import tiny_clip_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CATSEG_DIR = osp.join(ROOT, 'configs', 'catseg')

#: a tiny head: every channel number, the window and the class length small
TINY_HEAD = dict(type='DeCLIPCATSegHead', embed_dims=16, appearance_guidance_dims=8,
                 text_guidance_dims=8, num_layers=2, num_heads=2, window_size=4, pad_len=12,
                 pool_size=2, decoder_channels=(16, 16), guidance_channels=(8, 8),
                 guidance_proj_channels=(4, 4))


def tiny_segmentor_cfg(family='eva02', class_names=('cat', ('dog', 'puppy'), 'sky', 'grass', 'road'),
                       **kwargs):
    tiny = tiny_clip_config(family)
    cfg = dict(
        type='DeCLIPCATSegSegmentor',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, size=(32, 32),
                               seg_pad_val=255),
        backbone=dict(type='DeCLIPVisionTransformer', model_name=tiny, attn_mode='csa',
                      out_indices=(0, 1)),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=tiny, templates='catseg'),
        decode_head=dict(TINY_HEAD),
        class_names=class_names if isinstance(class_names, str) else list(class_names),
        test_cfg=dict(mode='catseg', size=48, crop_size=32, stride=16, batch_size=4))
    cfg.update(kwargs)
    return cfg


def catseg_config(name):
    (path, ) = glob.glob(osp.join(CATSEG_DIR, name))
    return path


def tiny_tool_options(tmp_path, family='eva02'):
    """--cfg-options that shrink a configs/catseg config to tiny random towers and a tiny head."""
    js = tmp_path / f'tiny_{family}.json'
    js.write_text(json.dumps(tiny_clip_config(family)))
    head = [f'model.decode_head.{k}={v}' for k, v in TINY_HEAD.items() if k != 'type']
    return [f'model.backbone.model_name={js}', f'model.text_encoder.model_name={js}',
            'model.backbone.pretrained=None', 'model.text_encoder.pretrained=None',
            'model.backbone.out_indices=(0,1)', 'model.test_cfg.size=96',
            'model.test_cfg.crop_size=64', 'model.test_cfg.stride=32',
            'test_dataloader.num_workers=0', 'test_dataloader.dataset.pipeline.1.scale=(256,96)',
            *[h.replace(' ', '') for h in head],
            'allow_untrained_head=True']   # random heads on purpose (issue 24.2: else refused)


