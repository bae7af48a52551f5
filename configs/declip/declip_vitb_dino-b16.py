# VFM ablation: DINO ViT-B/16 as the VFM teacher. Reproduces the public training script
# `scripts/dist_DeCLIP_eva_vitb16_coco.sh` with `vfm_type=dino-B-16` (qq, context weight 0.1; see
# declip_eva02-b16_dinov2-b_4xb4-6e_coco-560_qq-0.1-script.py). VFM side (560 // 16) * 16 = 560 ->
# 35 x 35 tokens; DINO's position embedding follows its hub rule (scale_factor (n + 0.1) / M).
_base_ = ['./declip_eva02-b16_dinov2-b_4xb4-6e_coco-560_qq-0.1-script.py']
vfm_patch = 16
train_pipeline = [
    dict(type='LoadImageOrSkip'),
    dict(type='DeCLIPGridCrops', crop_size=224, max_crops=20, student_size=560, student_patch=16,
         seed=0),
    dict(type='DeCLIPLetterbox', size=560, key='student_img', mean={{_base_.clip_mean}},
         std={{_base_.clip_std}}),
    dict(type='DeCLIPLetterbox', size=(560 // 16) * vfm_patch, key='vfm_img',
         mean={{_base_.imagenet_mean}}, std={{_base_.imagenet_std}}),
    dict(type='PackDeCLIPInputs'),
]
model = dict(vfm_teacher=dict(arch='dino_vitb16', pretrained='weights/dino_vitbase16_pretrain.pth'))
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
