# cityscapes val for the training-free protocol (docs/method.md §4): resize keep-ratio to (long cap 4096,
# short side 560) as the official DeCLIP evaluator.
_base_ = './tf_common.py'
data_root = 'data/cityscapes'
test_pipeline = [
    dict(type='DeCLIPLoadImage'),
    dict(type='Resize', scale=(4096, 560), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    dataset=dict(
        type='CityscapesDataset',
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
