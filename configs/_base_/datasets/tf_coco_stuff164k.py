# coco_stuff164k val for the training-free protocol (docs/method.md §4): resize keep-ratio to (long cap 4096,
# short side 448) as the official DeCLIP evaluator.
_base_ = './tf_common.py'
data_root = 'data/coco_stuff164k'
test_pipeline = [
    dict(type='DeCLIPLoadImage'),
    dict(type='Resize', scale=(4096, 448), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    dataset=dict(
        type='COCOStuffDataset',
        data_root=data_root,
        data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
