# The CAT-Seg-style head (docs/catseg.md) on the miniature world (docs/miniworld.md), fine-tuned on the
# world's CAT-Seg training split (seen classes only) and evaluated on its benchmark (all 17 classes;
# the metric also reports the mIoU over the seen and over the unseen classes). This config: from the
# DeCLIP tower (csa content features, as ../catseg/catseg_declip-eva02-b16_*.py); the plain-CLIP
# baseline is ./catseg_tiny-clip_miniworld-64.py (maskclip, as ../catseg/catseg_openai-vitb16_*.py).
# The recipe (../_base_/schedules/catseg_80k.py: AdamW 2e-4, towers x 0.01 with Q/V + position
# embeddings, gradient-norm clip 0.01, cosine to 0) scaled to the world and a CPU:
#   * 64-px crops of the 64-px scenes (the tiny CLIP's input side; 384 for B/16), flip and photometric
#     distortion; batch 8; a short schedule (max_iters, 500 by default) instead of 80k;
#   * a narrower head (32 channels instead of 128, window 4 on the 8 x 8 grid, class length 32 instead
#     of 256; guidance from blocks 1 and 2 of 4, as 3 and 7 of 12);
#   * test: the whole 64-px image in one view (mode 'whole': the tower's input side).
# Towers, world folder, seen classes: --cfg-options (declip_mm/miniworld/experiments.py sets them):
#   python tools/train.py THIS --cfg-options model.backbone.pretrained=declip_epoch_6.pth \
#       model.backbone.model_name=CLIP.json model.text_encoder.model_name=CLIP.json \
#       model.text_encoder.pretrained=CLIP.pt train_dataloader.dataset.data_root=OUT/world/ade/...
#   python tools/test.py THIS work_dirs/THIS/iter_500.pth --cfg-options (the same)
_base_ = [
    '../_base_/models/catseg_declip_eva02-b16.py',
    '../_base_/schedules/catseg_80k.py',
    '../_base_/tf_runtime.py',
]
custom_imports = dict(imports=['declip_mm', 'declip_mm.miniworld.dataset',
                               'declip_mm.miniworld.class_group_metric'],
                      allow_failed_imports=False)
world_root = 'data/miniworld'
clip_model = 'work_dirs/miniworld/clip/clip.json'
clip_weights = 'work_dirs/miniworld/clip/clip.pt'
declip_weights = clip_weights
image_side = 64
# the world's default held-out classes (declip_mm.miniworld.layouts.DEFAULT_UNSEEN): moon, kite,
# leaf, sand; experiments.py sets both lists from the world's world.json
seen_classes = ['fish', 'star', 'heart', 'tree', 'house', 'donut', 'arrow', 'flower', 'grass',
                'water', 'brick', 'snow', 'wood']
unseen_classes = ['moon', 'kite', 'leaf', 'sand']
data_preprocessor = dict(size=(image_side, image_side))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(model_name=clip_model, pretrained=declip_weights, out_indices=(1, 2)),
    text_encoder=dict(model_name=clip_model, pretrained=clip_weights),
    decode_head=dict(embed_dims=32, appearance_guidance_dims=32, text_guidance_dims=32,
                     num_layers=2, num_heads=2, window_size=4, pad_len=32,
                     decoder_channels=(32, 16), guidance_channels=(32, 16),
                     guidance_proj_channels=(16, 8)),
    class_names='{{fileDirname}}/../class_names/miniworld.txt',  # evaluation: all classes
    test_cfg=dict(mode='whole', size=image_side, crop_size=image_side, stride=image_side,
                  global_view=False, batch_size=8))
train_pipeline = [
    dict(type='DeCLIPLoadImage'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', scale=(4096, image_side), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(image_side, image_side), cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='DeCLIPLoadImage'),
    dict(type='Resize', scale=(4096, image_side), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='MiniWorldDataset',
        data_root=world_root + '/ade/ADEChallengeData2016',
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        metainfo=dict(classes=seen_classes),
        pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='MiniWorldDataset',
        data_root=world_root + '/ade/ADEChallengeData2016',
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_evaluator = dict(type='ClassGroupIoUMetric', iou_metrics=['mIoU'],
                      class_groups=dict(seen=seen_classes, unseen=unseen_classes))
test_cfg = dict(type='TestLoop')
val_dataloader = None
val_evaluator = None
val_cfg = None
max_iters = 500
param_scheduler = [
    dict(type='DeCLIPWarmupCosineLR', warmup_iters=0, begin=0, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)
default_hooks = dict(logger=dict(interval=50),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                                     max_keep_ckpts=1))
