# F-ViT (CLIPSelf, ICLR 2024: F-ViT/configs/ov_coco/fvit_vitb16_upsample_fpn_bs64_3e_ovcoco_*.py)
# on a frozen DeCLIP / EVA02-CLIP B/16 tower, OV-COCO (48 base / 17 novel), built through mmdet.
#   python tools/train.py configs/detection/fvit_declip-eva02-b16_ov-coco.py   # 8 GPUs x 8 images
#   python tools/test.py  configs/detection/fvit_declip-eva02-b16_ov-coco.py work_dirs/.../epoch_3.pth
# Set `clip_weights` to a DeCLIP export (declip_epoch_6.pth, EVA02-B-16 csa) or the EVA02-CLIP file.
_base_ = [
    'mmdet::_base_/default_runtime.py',
    '../_base_/datasets/ov_coco_detection.py',
]
custom_imports = dict(imports=['declip_mm'], allow_failed_imports=False)
default_scope = 'mmdet'

clip_model = 'EVA02-B-16'
clip_weights = 'weights/EVA02_CLIP_B_psz16_s8B.pt'  # image tower; the text tower reads the EVA02 file
text_weights = 'weights/EVA02_CLIP_B_psz16_s8B.pt'
clip_depth = 12
norm_cfg = dict(type='SyncBN', requires_grad=True)
num_classes = 65

model = dict(
    type='DeCLIPFViT',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323],  # CLIP's, 0-255
        bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(
        type='DeCLIPVisionTransformer',
        model_name=clip_model,
        pretrained=clip_weights,
        attn_mode='csa',
        out_type='featmap',
        out_indices=(3, 5, 7, -1),       # F-ViT's blocks 3, 5, 7, 11 (the last: our content map)
        out_scales=(4.0, 2.0, 1.0, 0.5),  # strides 4, 8, 16, 32
        frozen_stages=clip_depth),        # the whole CLIP tower frozen; the pyramid trains
    neck=dict(type='FPN', in_channels=[768, 768, 768, 512], out_channels=256, num_outs=5,
              norm_cfg=norm_cfg),
    rpn_head=dict(
        type='RPNHead', in_channels=256, feat_channels=256, num_convs=2,
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                              strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='DeCLIPOVRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=256, featmap_strides=[4, 8, 16, 32]),
        clip_roi_extractor=dict(  # 1x1 RoI-align on the frozen content map (patch stride 16)
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=1, sampling_ratio=0),
            out_channels=512, featmap_strides=[16]),
        bbox_head=dict(
            type='DeCLIPOVBBoxHead',
            text_encoder=dict(model_name=clip_model, pretrained=text_weights, templates='vild'),
            classes={{_base_.classes}},
            base_classes={{_base_.base_classes}},
            learned_temperature=50.0, clip_temperature=75.0,
            alpha=0.1, beta=0.8,  # F-ViT's OV-COCO exponents (base / novel); widths as F-ViT
            in_channels=256, conv_out_channels=256, fc_out_channels=512, roi_feat_size=7,
            num_shared_convs=4, num_shared_fcs=2, num_cls_fcs=1, num_reg_fcs=1,
            norm_cfg=norm_cfg, reg_class_agnostic=True,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            # F-ViT: background weighted 0.6; novel columns are masked out of the softmax
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                          class_weight=[1.0] * num_classes + [0.6]),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                          min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=-1, pos_weight=-1, debug=False),
        rpn_proposal=dict(nms_pre=2000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                          min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                          min_pos_iou=0.5, match_low_quality=False, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            pos_weight=-1, debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=2000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                 min_bbox_size=0),
        rcnn=dict(score_thr=0.01, nms=dict(type='nms', iou_threshold=0.4), max_per_img=100)))

# F-ViT's schedule: AdamW 1e-4, wd 0.1, grad clip 1.0, 250 warm-up iterations, 3 epochs at 64 images
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=64)
find_unused_parameters = True  # for an unfrozen tower: the decoupled last block skips its FFN
