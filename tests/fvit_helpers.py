"""A tiny-tower child of configs/detection/fvit_declip-eva02-b16_ov-coco.py for tests (written as a
config file in tmp_path so that mmengine's inheritance is what a user gets)."""
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FVIT_CONFIG = osp.join(ROOT, 'configs', 'detection', 'fvit_declip-eva02-b16_ov-coco.py')


def write_tiny_fvit_config(path, data_root, work_dir, max_epochs=1):
    from declip_mm.testing import tiny_clip_config
    tower = dict(_delete_=True, **tiny_clip_config('eva02', depth=4, patch_size=16))
    text = dict(model_name=tower, pretrained=None, templates='single')
    data_root = data_root.rstrip('/') + '/'
    text_cfg = f'''_base_ = {FVIT_CONFIG!r}
data_root = {data_root!r}
work_dir = {work_dir!r}
image_size = (64, 64)
model = dict(
    data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=image_size)]),
    backbone=dict(model_name={tower!r}, pretrained=None, out_indices=(0, 1, 2, -1),
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
    with open(path, 'w') as f:
        f.write(text_cfg)
    return path
