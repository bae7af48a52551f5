# DeCLIP, EVA02-CLIP-B/16 student + DINOv2-B/14 (with registers) teacher: the SPEC §5 recipe.
#   python tools/train.py configs/declip/declip_vitb_dinov2.py [--auto-scale-lr]
# Global batch 16 = 4 per GPU x 4 GPUs (auto_scale_lr rescales lr 1e-5 to the real global batch).
# After each epoch work_dirs/<name>/declip_epoch_<e>.pth holds the alpha-merged image tower, usable
# directly as tools/test.py's CHECKPOINT for the training-free configs.
_base_ = [
    '../_base_/datasets/coco_unlabeled.py',
    '../_base_/schedules/declip_6e.py',
    '../_base_/declip_runtime.py',
]
clip_model = 'EVA02-B-16'
clip_weights = 'weights/EVA02_CLIP_B_psz16_s8B.pt'      # original EVA-CLIP release (local file)
vfm_weights = 'weights/dinov2_vitb14_reg4_pretrain.pth'  # DINOv2 hub checkpoint (local file)
attn_mode = 'csa'
attn_scale = 1.0   # the official EVA training code's tau (1/sqrt(d) commented out)
model = dict(
    type='DeCLIPDistiller',
    student=dict(type='DeCLIPVisionTransformer', model_name=clip_model, pretrained=clip_weights,
                 attn_mode=attn_mode, attn_scale=attn_scale),
    vfm_teacher=dict(type='VFMTeacher', arch='dinov2_vitb14_reg', pretrained=vfm_weights),
    content_loss=dict(type='ContentDistillLoss', loss_weight=1.0),
    context_loss=dict(type='ContextDistillLoss', loss_weight=0.1, use_mask=False),
    context_source='qk',
    teacher_dtype=None)
train_dataloader = dict(batch_size=4)
merge_alpha = 0.7
custom_hooks = [
    dict(type='DeCLIPEpochHook'),
    dict(type='DeCLIPMergeExportHook', alpha=merge_alpha),
    dict(type='DeCLIPFiniteWeightsHook'),  # NaN/Inf weights stop the run before any checkpoint
]
