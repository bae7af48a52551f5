# context59 val with CAT-Seg's test resize (docs/catseg.md): short side 640 (long side capped at 2560); the
# segmentor then resizes to 640x640 and runs four 384 windows plus a global view.
_base_ = './tf_context59.py'
test_pipeline = [
    dict(type='DeCLIPLoadImage'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
