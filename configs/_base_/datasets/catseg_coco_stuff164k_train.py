# COCO-Stuff164k (171 classes) for CAT-Seg training (docs/catseg.md): short side 384 (long side capped at
# 1333, detectron2's default), random 384x384 crops, horizontal flip, photometric distortion,
# batch 4. Validation: COCO-Stuff val with the CAT-Seg test resize.
_base_ = './catseg_coco_stuff164k.py'
train_pipeline = [
    dict(type='DeCLIPLoadImage'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=(1333, 384), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(384, 384), cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='COCOStuffDataset',
        data_root={{_base_.data_root}},
        data_prefix=dict(img_path='images/train2017', seg_map_path='annotations/train2017'),
        pipeline=train_pipeline))
