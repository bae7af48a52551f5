# Shared parts of the training-free benchmark configs (docs/method.md §4): batch 1, IoU metric, test loops.
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False))
val_dataloader = test_dataloader
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
val_evaluator = test_evaluator
test_cfg = dict(type='TestLoop')
val_cfg = dict(type='ValLoop')
# tools/test.py --tta: after the protocol resize of test_pipeline, rescale by these ratios, with and
# without a horizontal flip (the pipeline is built from test_pipeline, so it follows each benchmark).
tta_ratios = (0.75, 1.0, 1.25)
