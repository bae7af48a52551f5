# Training-free DeCLIP on the miniature world's benchmark (docs/miniworld.md): the ADE20K training-free
# config with the world's data (ADE layout, reduce_zero_label=True, 17 classes) and its tiny CLIP.
# The world is written by declip_mm.miniworld.write_world(OUT); point the dataset at it and the towers
# at the tiny CLIP (tools/miniworld.py does both), e.g.
#   python tools/test.py THIS --cfg-options test_dataloader.dataset.data_root=OUT/ade/ADEChallengeData2016 \
#       model.backbone.model_name=CLIP.json model.backbone.pretrained=CLIP.pt \
#       model.text_encoder.model_name=CLIP.json model.text_encoder.pretrained=CLIP.pt
_base_ = ['../training_free/declip_eva02-b16_training-free_ade20k-448.py']
custom_imports = dict(imports=['declip_mm', 'declip_mm.miniworld.dataset'], allow_failed_imports=False)
world_root = 'data/miniworld'                         # OUT of write_world
clip_model = 'work_dirs/miniworld/clip/model.json'    # the tiny CLIP (open_clip model-config file)
clip_weights = 'work_dirs/miniworld/clip/open_clip.pt'
image_side = 64                                       # the world's image side = the tiny CLIP's input
test_pipeline = [
    dict(type='DeCLIPLoadImage'),
    dict(type='Resize', scale=(4096, image_side), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    dataset=dict(type='MiniWorldDataset', data_root=world_root + '/ade/ADEChallengeData2016',
                 pipeline=test_pipeline))
val_dataloader = test_dataloader
model = dict(
    backbone=dict(model_name=clip_model, pretrained=clip_weights),
    text_encoder=dict(model_name=clip_model, pretrained=clip_weights),
    class_names='{{fileDirname}}/../class_names/miniworld.txt',
    test_cfg=dict(mode='slide', crop_size=image_side, stride=image_side // 2))
