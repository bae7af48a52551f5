# Unlabeled COCO train2017 images for DeCLIP distillation (docs/method.md §2). No labels are read.
data_root = 'data/coco'
student_side = 560   # student letterbox (bottom/right zero padding), CLIP mean/std
clip_patch = 16      # student patch: token boxes = pixels * (560 / max(h, w)) / clip_patch
vfm_patch = 14       # VFM patch: VFM side = (student_side // clip_patch) * vfm_patch -> same grid
crop_size = 224      # CLIP-teacher crop side (336 for L/14-336)
clip_mean = (0.48145466, 0.4578275, 0.40821073)
clip_std = (0.26862954, 0.26130258, 0.27577711)
imagenet_mean = (0.485, 0.456, 0.406)
imagenet_std = (0.229, 0.224, 0.225)
train_pipeline = [
    dict(type='LoadImageOrSkip'),
    dict(type='DeCLIPGridCrops', crop_size=crop_size, max_crops=20, student_size=student_side,
         student_patch=clip_patch, seed=0),
    dict(type='DeCLIPLetterbox', size=student_side, key='student_img', mean=clip_mean, std=clip_std),
    dict(type='DeCLIPLetterbox', size=(student_side // clip_patch) * vfm_patch, key='vfm_img',
         mean=imagenet_mean, std=imagenet_std),
    dict(type='PackDeCLIPInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    # False: workers are re-created each epoch and see dataset.epoch (seeded grid crops)
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='UnlabeledImageDataset', data_root=data_root, img_dir='train2017',
                 ann_file=None, pipeline=train_pipeline))
