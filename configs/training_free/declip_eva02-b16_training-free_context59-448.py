# Training-free DeCLIP on context59 (docs/method.md §4): short side 448, window 336 / stride 112,
# logit scale 40, prob_thd 0.0, attn_mode csa, tau = 1/sqrt(d).
_base_ = [
    '../_base_/models/declip_zero_shot.py',
    '../_base_/datasets/tf_context59.py',
    '../_base_/tf_runtime.py',
]
custom_imports = dict(imports=['declip_mm'], allow_failed_imports=False)
model = dict(
    class_names='{{fileDirname}}/../class_names/context59.txt',
    logit_scale=40.0,
    prob_thd=0.0,
    test_cfg=dict(mode='slide', crop_size=336, stride=112))
