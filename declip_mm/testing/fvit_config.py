"""Text of a tiny-tower child of the F-ViT config (64 px, small channels, fp32 on the CPU).

Written as a config *file* by the tests (``tests/fvit_helpers.py``) and by
``tools/make_tiny_towers.py``, so that mmengine's inheritance from
``configs/detection/fvit_declip-eva02-b16_ov-coco.py`` is exactly what a user gets.
"""
from __future__ import annotations

from typing import Any, Optional


def tiny_fvit_config_text(base_config: str, model_name: Any, pretrained: Optional[str],
                          data_root: str, work_dir: Optional[str] = None, max_epochs: int = 1,
                          header: str = '') -> str:
    """The config text.

    Args:
        base_config (str): absolute path of the F-ViT config to inherit.
        model_name: the tower's open_clip config (a dict, with ``_delete_=True`` to replace the
            base's name, or a JSON file path); used by the image and the text tower.
        pretrained (str, optional): the towers' weight file (``None``: random initialisation).
        data_root (str): an OV-COCO folder (``declip_mm.testing.write_ov_coco_fixture``).
        work_dir (str, optional): written as ``work_dir`` when given.
        max_epochs (int): training epochs. Defaults to 1.
        header (str): a first comment line.
    """
    data_root = data_root.rstrip('/') + '/'
    text = dict(model_name=model_name, pretrained=pretrained, templates='single')
    lines = [header] if header else []
    lines += [f'_base_ = {base_config!r}', f'data_root = {data_root!r}']
    if work_dir is not None:
        lines.append(f'work_dir = {work_dir!r}')
    return '\n'.join(lines) + f'''
image_size = (64, 64)
model = dict(
    data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=image_size)]),
    backbone=dict(model_name={model_name!r}, pretrained={pretrained!r}, out_indices=(0, 1, 2, -1),
                  frozen_stages=4),
    neck=dict(in_channels=[64, 64, 64, 32], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=32),
                  clip_roi_extractor=dict(out_channels=32),
                  bbox_head=dict(text_encoder={text!r}, in_channels=32, conv_out_channels=16,
                                 fc_out_channels=32, num_shared_convs=1)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=50),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50),
                  rcnn=dict(score_thr=0.0, max_per_img=20)))
train_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True), dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline,
                                     filter_cfg=dict(min_size=8)))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'zero-shot/instances_val2017_all_2.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={max_epochs})
# the CPU: fp32 (the config's AmpOptimWrapper needs a GPU)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.1),
                     clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
'''
