# OpenAI CLIP ViT-B/16 + DINO ViT-B/8 (the public default, configs/base_config.py): ade20k, reproduces mc-lan/ProxyCLIP configs/cfg_ade20k.py
# (docs/method.md §7): short side 448, window 336 / stride 112, logit scale 40, prob_thd 0.0.
_base_ = [
    '../../_base_/models/proxyclip_vitb16_dino-b8.py',
    '../../_base_/datasets/tf_ade20k.py',
    '../../_base_/tf_runtime.py',
]
custom_imports = dict(imports=['declip_mm'], allow_failed_imports=False)
model = dict(
    class_names='{{fileDirname}}/../../class_names/ade20k.txt',
    logit_scale=40.0,
    prob_thd=0.0,
    test_cfg=dict(mode='slide', crop_size=336, stride=112))
test_pipeline = [
    dict(type='DeCLIPLoadImage'),
    dict(type='Resize', scale=(2048, 448), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
