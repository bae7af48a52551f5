# Runtime of the training-free evaluations: mmseg's runtime plus the hooks tools/test.py expects
# (the visualization hook is what --show / --show-dir switch on).
_base_ = 'mmseg::_base_/default_runtime.py'
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))  # tools/*.py switch to gloo without CUDA
# averages class probabilities and keeps prob_thd (mmseg's SegTTAModel would softmax them again)
tta_model = dict(type='DeCLIPSegTTAModel')
