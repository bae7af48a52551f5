default_scope = 'mmseg'
custom_imports = dict(imports=['declip_mm'], allow_failed_imports=False)
env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))  # tools/train.py switches to gloo without CUDA
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=1, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'))
merge_alpha = 0.7  # alpha * student + (1 - alpha) * original after each epoch (0.95 for ViT-L)
custom_hooks = [
    dict(type='DeCLIPEpochHook'),
    dict(type='DeCLIPMergeExportHook', alpha=merge_alpha),
    dict(type='DeCLIPFiniteWeightsHook'),  # NaN/Inf weights stop the run before any checkpoint
]
# True (or tools/train.py --tensorboard): also log to TensorBoard (work_dir/<timestamp>/vis_data)
use_tensorboard = False
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=True, window_size=50)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
