# mmdet's own Faster R-CNN R50-FPN config with the DeCLIP tower as backbone (README "Use in your own
# mmseg / mmdet configs"). Only the backbone, the FPN's in_channels and the normalisation change.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['declip_mm'], allow_failed_imports=False)

model = dict(
    # CLIP's mean/std (0-255); pad_size_divisor=32 of the stock file keeps H, W multiples of 16
    data_preprocessor=dict(mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323]),
    backbone=dict(
        _delete_=True,
        type='DeCLIPVisionTransformer',
        model_name='EVA02-B-16',
        pretrained='weights/EVA02_CLIP_B_psz16_s8B.pt',
        attn_mode='csa',
        out_type='featmap',
        out_indices=(3, 5, 7, -1),       # blocks 3, 5, 7 (width 768) + the content map (512)
        out_scales=(4.0, 2.0, 1.0, 0.5)),  # ViTDet simple pyramid: strides 4, 8, 16, 32
    neck=dict(in_channels=[768, 768, 768, 512]))
