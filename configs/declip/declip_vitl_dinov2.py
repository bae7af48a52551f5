# DeCLIP, EVA02-CLIP-L/14-336 student + DINOv2-L/14 (with registers): the README's ViT-L entry point.
# Student 560 -> 40 x 40 tokens, VFM 560 -> 40 x 40, teacher crops 336. Global batch 8 = 2 per GPU x 4
# GPUs; alpha 0.95 (the ViT-L script's). Mode csa (heads merged) like every DeCLIP release, context
# weight 0.1 of the public ViT-L script: no official ViT-L release names its weight, so this is not a
# reproduction of a named release. The exact public script (qq) is
# declip_eva02-l14-336_dinov2-l_4xb2-6e_coco-560_qq-0.1-script.py.
_base_ = ['./declip_vitb_dinov2.py']
clip_model = 'EVA02-L-14-336'
clip_weights = 'weights/EVA02_CLIP_L_336_psz14_s6B.pt'
vfm_weights = 'weights/dinov2_vitl14_reg4_pretrain.pth'
clip_patch = 14
vfm_patch = 14
crop_size = 336
student_side = 560
train_pipeline = [
    dict(type='LoadImageOrSkip'),
    dict(type='DeCLIPGridCrops', crop_size=crop_size, max_crops=20, student_size=student_side,
         student_patch=clip_patch, seed=0),
    dict(type='DeCLIPLetterbox', size=student_side, key='student_img',
         mean={{_base_.clip_mean}}, std={{_base_.clip_std}}),
    dict(type='DeCLIPLetterbox', size=(student_side // clip_patch) * vfm_patch, key='vfm_img',
         mean={{_base_.imagenet_mean}}, std={{_base_.imagenet_std}}),
    dict(type='PackDeCLIPInputs'),
]
model = dict(
    student=dict(model_name=clip_model, pretrained=clip_weights),
    vfm_teacher=dict(arch='dinov2_vitl14_reg', pretrained=vfm_weights),
    context_loss=dict(loss_weight=0.1))
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
auto_scale_lr = dict(base_batch_size=8)
merge_alpha = 0.95
custom_hooks = [
    dict(type='DeCLIPEpochHook'),
    dict(type='DeCLIPMergeExportHook', alpha=merge_alpha),
    dict(type='DeCLIPFiniteWeightsHook'),  # NaN/Inf weights stop the run before any checkpoint
]
