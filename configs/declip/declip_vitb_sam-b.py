# VFM ablation: SAM ViT-B image encoder as the VFM teacher (needs `pip install segment-anything`).
# Reproduces the public training script `scripts/dist_DeCLIP_eva_vitb16_coco.sh` with
# `vfm_type=sam-B` (qq, context weight 0.1; see declip_eva02-b16_dinov2-b_4xb4-6e_coco-560_qq-0.1-script.py):
# as the official code, SAM takes the same 560 letterbox as the student ((560 // 16) * 16, ImageNet
# mean/std = SAM's pixel mean/std), i.e. 35 x 35 tokens with its 64 x 64 absolute position embedding
# rescaled bicubically, and runs in half precision (the official build_vfm calls .half()).
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
model = dict(vfm_teacher=dict(arch='sam_vitb', pretrained='weights/sam_vit_b_01ec64.pth',
                              precision='fp16'))
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
