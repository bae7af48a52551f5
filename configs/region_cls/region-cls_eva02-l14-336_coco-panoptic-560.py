# Region classification on COCO-panoptic val2017 (protocol: README, region classification) with EVA02-CLIP-L/14-336: 560 letterbox
# (40 x 40 tokens), crops at 336, csa content map with tau 1.0 (as declip_vitl_dinov2.py trains).
_base_ = ['./region-cls_eva02-b16_coco-panoptic-560.py']
clip_model = 'EVA02-L-14-336'
clip_weights = 'weights/EVA02_CLIP_L_336_psz14_s6B.pt'
region_patch_size = 14
region_crop_size = 336
model = dict(
    backbone=dict(model_name=clip_model, pretrained=clip_weights),
    text_encoder=dict(model_name=clip_model, pretrained=clip_weights),
    crop_batch_size=32)
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadPanopticRegions', image_size=560, patch_size=region_patch_size,
         crop_size=region_crop_size, min_size=8, max_size=1024, max_regions=100,
         thing_crop_scale=1.5),
    dict(type='DeCLIPLetterbox', size=560, key='img_tensor'),
    dict(type='PackRegionInputs'),
]))
