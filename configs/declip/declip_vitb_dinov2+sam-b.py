# Beyond the paper (docs/method.md §6): the entry-point recipe with two VFM context teachers,
# DINOv2-B/14 (registers, fp32, 490 letterbox) and SAM ViT-B (fp16, the student's 560 letterbox, as
# the official SAM ablation feeds it). Both give 35 x 35 tokens, so either combination works:
#   vfm_combine='loss'   -> L = sum_t w_t * L(S_s, S_t)           (default here)
#   vfm_combine='target' -> L = L(S_s, sum_t w_t * S_t)
# Weights are normalised to sum 1; equal weights are our choice (no paper or public code uses two).
# SAM needs `pip install segment-anything`; both weight files are local.
#   python tools/train.py configs/declip/declip_vitb_dinov2+sam-b.py
_base_ = ['./declip_vitb_dinov2.py']
sam_weights = 'weights/sam_vit_b_01ec64.pth'
train_pipeline = [
    dict(type='LoadImageOrSkip'),
    dict(type='DeCLIPGridCrops', crop_size=224, max_crops=20, student_size=560, student_patch=16,
         seed=0),
    dict(type='DeCLIPLetterbox', size=560, key='student_img', mean={{_base_.clip_mean}},
         std={{_base_.clip_std}}),
    # teacher 1 (DINOv2/14): 490 px; teacher 2 (SAM/16): 560 px -> key vfm_img_1
    dict(type='DeCLIPLetterbox', size=(560 // 16) * 14, key='vfm_img',
         mean={{_base_.imagenet_mean}}, std={{_base_.imagenet_std}}),
    dict(type='DeCLIPLetterbox', size=(560 // 16) * 16, key='vfm_img_1',
         mean={{_base_.imagenet_mean}}, std={{_base_.imagenet_std}}),
    dict(type='PackDeCLIPInputs'),
]
model = dict(
    vfm_teacher=[
        dict(type='VFMTeacher', arch='dinov2_vitb14_reg', pretrained={{_base_.vfm_weights}}),
        dict(type='VFMTeacher', arch='sam_vitb', pretrained=sam_weights, precision='fp16'),
    ],
    vfm_weights=(1.0, 1.0),
    vfm_combine='loss')
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
