# voc21 val for the training-free protocol (docs/method.md §4): resize keep-ratio to (long cap 4096,
# short side 448) as the official DeCLIP evaluator.
_base_ = './tf_common.py'
data_root = 'data/VOCdevkit/VOC2012'
test_pipeline = [
    dict(type='DeCLIPLoadImage'),
    dict(type='Resize', scale=(4096, 448), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    dataset=dict(
        type='PascalVOCDataset',
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline))
val_dataloader = test_dataloader
