# Tiny DeCLIP run with RANDOM weights (no downloads): the quick-start and the tests use it to run the
# real training code path (Runner, losses, teachers, merge/export hook) in seconds on a CPU.
#   python tools/train.py configs/declip/declip_tiny-random_quickstart.py \
#       --cfg-options train_dataloader.dataset.data_root=<folder> train_dataloader.dataset.img_dir=.
_base_ = ['./declip_vitb_dinov2.py']
tiny_clip = dict(
    _delete_=True,
    embed_dim=32,
    vision_cfg=dict(image_size=32, timm_model_name='eva02_base_patch16_clip_224',
                    timm_model_kwargs=dict(embed_dim=64, depth=3, num_heads=2, patch_size=8)),
    text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2),
    custom_text=True)
student_side = 64   # 8 x 8 student tokens
clip_patch = 8
vfm_patch = 14      # tiny DINOv2-style teacher: 112 px -> 8 x 8 tokens
crop_size = 32
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
    student=dict(model_name=tiny_clip, pretrained=None),
    vfm_teacher=dict(arch='dinov2_vitb14_reg', pretrained=None,
                     arch_overrides=dict(embed_dim=48, depth=2, num_heads=2, img_size=56)))
train_dataloader = dict(
    batch_size=2, num_workers=0,
    dataset=dict(data_root='data/tiny_images', img_dir='.', pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='DeCLIPWarmupCosineLR', warmup_iters=3, begin=0, end=3, by_epoch=True,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3)
default_hooks = dict(logger=dict(interval=5))
