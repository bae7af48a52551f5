# CAT-Seg's schedule (configs/config.yaml + vitb_384.yaml of the public code; docs/catseg.md): AdamW lr 2e-4,
# weight decay 1e-4 (none on norm layers), the CLIP towers at lr x 0.01, full-model gradient-norm
# clipping at 0.01, 80k iterations of "WarmupCosineLR" with WARMUP_ITERS 0 (cosine to 0; set
# warmup_iters > 0 for a linear warm-up).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    constructor='DeCLIPCATSegOptimWrapperConstructor',
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={'backbone': dict(lr_mult=0.01), 'text_encoder': dict(lr_mult=0.01)}))
param_scheduler = [
    dict(type='DeCLIPWarmupCosineLR', warmup_iters=0, begin=0, end=80000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=5000)
auto_scale_lr = dict(enable=False, base_batch_size=4)  # tools/train.py --auto-scale-lr
