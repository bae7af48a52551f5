# Region classification (protocol: README, region classification) as the validation of DeCLIP training: after every epoch the
# alpha-merged student (the exported tower) classifies the COCO-panoptic val2017 regions; the log and the
# TensorBoard scalars show region_cls/rois.thing.macc1 etc. Off by default. To switch it on in a
# training config (e.g. configs/declip/declip_vitb_dinov2.py), add this file to its _base_ list and
# set the validation interval:
#     _base_ = [..., '../_base_/region_cls_val.py']
#     train_cfg = dict(val_interval=1)
# For ViT-L/14-336 also set region_val_patch_size = 14 and region_val_crop_size = 336 (and repeat
# the pipeline below). The text tower (the class embeddings) defaults to the student's model name and
# CLIP weights. The full val2017 takes a while (5000 images); use val_dataloader.dataset.indices to
# validate on a subset (e.g. indices=500).
region_val_data_root = 'data/coco'
region_val_image_size = 560
region_val_patch_size = 16
region_val_crop_size = 224
model = dict(
    region_eval=dict(
        type='DeCLIPRegionClassifier',
        backbone=None,  # the student
        text_encoder=dict(type='DeCLIPTextEncoder', templates='vild_hand_craft'),
        features=('rois', 'maskpool', 'crops'),
        topk=5,
        crop_batch_size=64,
        embedding_cache_dir='work_dirs/region_cls_text_cache',
        # validate alpha * student + (1 - alpha) * original, the tower exported after the epoch
        # (as the official code evaluates); 0.95 for ViT-L (merge_alpha of the training config)
        merge_alpha=0.7))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='COCOPanopticRegionDataset',
        data_root=region_val_data_root,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        pipeline=[
            dict(type='LoadPanopticRegions', image_size=region_val_image_size,
                 patch_size=region_val_patch_size, crop_size=region_val_crop_size),
            dict(type='DeCLIPLetterbox', size=region_val_image_size, key='img_tensor'),
            dict(type='PackRegionInputs'),
        ]))
val_evaluator = dict(type='RegionClassificationMetric')
val_cfg = dict(type='ValLoop')
