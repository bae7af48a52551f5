# Region classification (README, "Evaluate: region classification") on the miniature world's
# COCO-panoptic files (docs/miniworld.md): every ground-truth segment of the benchmark's scenes is
# classified against the world's 17 class names (11 things, 6 stuff). The protocol of
# ../region_cls/region-cls_eva02-b16_coco-panoptic-560.py scaled to the world: 64 letterbox (the tiny
# CLIP's input side, 8 x 8 tokens), crops at 64, regions with w * h >= 4² (half a token a side, as
# 8 px is for 16-px tokens at COCO's scale), csa content map with tau 1.0 (as the world's DeCLIP
# config trains). Towers and the world folder via --cfg-options (tools/miniworld.py sets them):
#   python tools/test.py THIS [declip_epoch_6.pth] --cfg-options \
#       test_dataloader.dataset.data_root=OUT/world/coco model.backbone.model_name=CLIP.json \
#       model.backbone.pretrained=CLIP.pt model.text_encoder.model_name=CLIP.json \
#       model.text_encoder.pretrained=CLIP.pt
_base_ = ['../region_cls/region-cls_eva02-b16_coco-panoptic-560.py']
world_root = 'data/miniworld'
clip_model = 'work_dirs/miniworld/clip/clip.json'
clip_weights = 'work_dirs/miniworld/clip/clip.pt'
region_image_size = 64
region_patch_size = 8
region_crop_size = 64
region_pipeline = [
    dict(type='LoadPanopticRegions', image_size=region_image_size, patch_size=region_patch_size,
         crop_size=region_crop_size, min_size=4, max_size=1024, max_regions=100,
         thing_crop_scale=1.5),
    dict(type='DeCLIPLetterbox', size=region_image_size, key='img_tensor'),
    dict(type='PackRegionInputs'),
]
model = dict(
    backbone=dict(model_name=clip_model, pretrained=clip_weights),
    text_encoder=dict(model_name=clip_model, pretrained=clip_weights),
    embedding_cache_dir=None)
test_dataloader = dict(
    num_workers=0,
    dataset=dict(data_root=world_root + '/coco', pipeline=region_pipeline))
