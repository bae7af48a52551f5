# docs/method.md §3: AdamW lr 1e-5, betas (0.9, 0.999), eps 1e-8, weight decay 0.1 on >= 2-D weights only;
# linear warm-up for 1000 iterations, then cosine to 0 at the end of epoch 6.
optim_wrapper = dict(
    type='OptimWrapper',
    # fused=True: torch's single-kernel AdamW (same update up to float rounding, no per-step
    # temporaries; tools/benchmark.py train)
    optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, fused=True),
    # only trainable parameters; no decay on 1-D ones (norms, biases, q/v biases, gammas)
    constructor='DeCLIPOptimWrapperConstructor',
)
param_scheduler = [
    dict(type='DeCLIPWarmupCosineLR', warmup_iters=1000, begin=0, end=6, by_epoch=True,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=6, val_interval=1000)
auto_scale_lr = dict(enable=False, base_batch_size=16)  # tools/train.py --auto-scale-lr
