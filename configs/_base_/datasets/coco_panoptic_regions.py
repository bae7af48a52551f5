# COCO-panoptic val2017 regions for region classification (protocol: README, region classification), mmdet's layout under data_root:
#   annotations/panoptic_val2017.json, annotations/panoptic_val2017/*.png, val2017/*.jpg
# Images: 560 letterbox (longest side 560, zero padding bottom/right) as in training; masks at the
# token grid 560 // patch; crops of the CLS baseline at the CLIP input size (224 for B/16).
data_root = 'data/coco'
region_image_size = 560
region_patch_size = 16
region_crop_size = 224
region_pipeline = [
    dict(type='LoadPanopticRegions', image_size=region_image_size, patch_size=region_patch_size,
         crop_size=region_crop_size, min_size=8, max_size=1024, max_regions=100,
         thing_crop_scale=1.5),
    dict(type='DeCLIPLetterbox', size=region_image_size, key='img_tensor'),
    dict(type='PackRegionInputs'),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='COCOPanopticRegionDataset',
        data_root=data_root,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        pipeline=region_pipeline))
test_evaluator = dict(type='RegionClassificationMetric')
test_cfg = dict(type='TestLoop')
