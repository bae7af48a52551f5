# DeCLIP EVA02-B/16 export + DINOv2 ViT-B/14-reg proxy (new combination; no published number): context60, ProxyCLIP settings of configs/cfg_context60.py on a DeCLIP export (tools/test.py CONFIG declip_epoch_6.pth)
# (docs/method.md §7): short side 336, window 336 / stride 112, logit scale 40, prob_thd 0.15.
_base_ = [
    '../../_base_/models/proxyclip_declip-eva02-b16_dinov2-b14reg.py',
    '../../_base_/datasets/tf_context60.py',
    '../../_base_/tf_runtime.py',
]
custom_imports = dict(imports=['declip_mm'], allow_failed_imports=False)
model = dict(
    class_names='{{fileDirname}}/../../class_names/context60.txt',
    logit_scale=40.0,
    prob_thd=0.15,
    test_cfg=dict(mode='slide', crop_size=336, stride=112))
test_pipeline = [
    dict(type='DeCLIPLoadImage'),
    dict(type='Resize', scale=(2048, 336), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
