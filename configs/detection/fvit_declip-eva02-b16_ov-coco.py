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
    # F-ViT's pixels: ImageNet mean/std (not CLIP's); after normalisation every training batch is
    # padded with 0 to 640x640 (Pad(size=(640, 640))) and every test batch to a square
    # (Pad(pad_to_square=True)): this sets the token grid and the position-embedding interpolation
    data_preprocessor=dict(
        type='SquarePadDetDataPreprocessor',
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_size_divisor=32, pad_value=0, test_pad_to_square=True,
        batch_augments=[dict(type='BatchFixedSizePad', size={{_base_.image_size}},
                            img_pad_value=0)]),
    backbone=dict(
        type='DeCLIPVisionTransformer',
        model_name=clip_model,
        pretrained=clip_weights,
        attn_mode='csa',
        # tau: attn_scale unset ('auto') takes the tau stored in a declip_mm export's meta, else
        # 1.0 (DeCLIP's EVA training code uses tau = 1); setting attn_scale overrides both
        default_attn_scale=1.0,
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
            # F-ViT's class embeddings: the 63 hand-crafted templates of CLIPSelf's
            # F-ViT/tools/clip_utils.py (multiple_templates), not ViLD's 14
            text_encoder=dict(model_name=clip_model, pretrained=text_weights,
                              templates='vild_hand_craft'),
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

# F-ViT's schedule: AdamW 1e-4, wd 0.1, grad clip 1.0, 250 warm-up iterations, 3 epochs at 64 images,
# fp16 with a static loss scale of 512 (`fp16 = dict(loss_scale=512.0)`): mmengine's AmpOptimWrapper,
# which needs a GPU (for a CPU run set optim_wrapper.type=OptimWrapper and drop loss_scale)
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale=512.0,
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=64)
find_unused_parameters = True  # for an unfrozen tower: the decoupled last block skips its FFN
