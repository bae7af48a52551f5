# mmseg's own ViT + MultiLevelNeck + UPerNet config with the DeCLIP tower as backbone (README
# "Use in your own mmseg / mmdet configs"). Only the backbone, the channel numbers and the input
# normalisation / padding change; everything else is mmseg's file.
_base_ = 'mmseg::vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py'
custom_imports = dict(imports=['declip_mm'], allow_failed_imports=False)

# CLIP's mean/std (0-255); test images are padded to the patch size (16)
data_preprocessor = dict(
    mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323],
    test_cfg=dict(size_divisor=16))
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,  # the stock ImageNet ViT file; the tower reads its own `pretrained`
    backbone=dict(
        _delete_=True,
        type='DeCLIPVisionTransformer',
        model_name='EVA02-B-16',
        pretrained='weights/EVA02_CLIP_B_psz16_s8B.pt',  # or a DeCLIP export (declip_epoch_6.pth)
        attn_mode='csa',
        out_type='featmap',
        out_indices=(3, 5, 7, -1)),  # blocks 3, 5, 7 (width 768) + the content map (512)
    # MultiLevelNeck resamples by [4, 2, 1, 0.5] itself, so the backbone keeps out_scales=None
    neck=dict(in_channels=[768, 768, 768, 512]))
