# Ablation: SAM ViT-B image encoder as the VFM teacher (needs `pip install segment-anything`).
# SAM takes 1024 x 1024 inputs (64 x 64 tokens); the student's 35 x 35 context map is resized
# bilinearly to 64 x 64 in the loss.
_base_ = ['./declip_vitb_dinov2.py']
train_pipeline = [
    dict(type='LoadImageOrSkip'),
    dict(type='DeCLIPGridCrops', crop_size=224, max_crops=20, student_size=560, student_patch=16,
         seed=0),
    dict(type='DeCLIPLetterbox', size=560, key='student_img', mean={{_base_.clip_mean}},
         std={{_base_.clip_std}}),
    dict(type='DeCLIPLetterbox', size=1024, key='vfm_img', mean={{_base_.imagenet_mean}},
         std={{_base_.imagenet_std}}),
    dict(type='PackDeCLIPInputs'),
]
model = dict(vfm_teacher=dict(arch='sam_vitb', pretrained='weights/sam_vit_b_01ec64.pth'))
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
