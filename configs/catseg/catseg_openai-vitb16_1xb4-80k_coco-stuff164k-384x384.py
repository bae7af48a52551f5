# CAT-Seg-style head on OpenAI CLIP ViT-B/16, the plain-CLIP baseline (docs/catseg.md),
# trained on COCO-Stuff164k (171 classes):
# 384 crops, batch 4, AdamW 2e-4 (towers x 0.01: image Q/V weights, text in_proj weights), 80k iterations.
# Start from the original OpenAI weights (weights/ViT-B-16.pt):
#   python tools/train.py THIS
_base_ = [
    '../_base_/models/catseg_openai-vitb16.py',
    '../_base_/datasets/catseg_coco_stuff164k_train.py',
    '../_base_/schedules/catseg_80k.py',
    '../_base_/tf_runtime.py',
]
custom_imports = dict(imports=['declip_mm'], allow_failed_imports=False)
model = dict(class_names='{{fileDirname}}/../class_names/catseg_coco_stuff171.txt')
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000,
                                     max_keep_ckpts=3))
