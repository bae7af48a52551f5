# Reproduces the public training script `scripts/dist_DeCLIP_eva_vitb16_coco.sh` of the official
# DeCLIP repository (main branch) with its default vfm_type=dinov2-B:
#   --mode qq_vfm_distill (context = Q, k_proj of the last block frozen), tau 1,
#   --loss_context_weight 0.1 --loss_content_weight 1.0, --det-image-size 560, --alpha 0.7,
#   4 GPUs x --batch-size 4, --lr 1e-5 --wd 0.1 --epochs 6 --warmup 1000.
# Its export is a qq checkpoint; the training-free configs (csa) accept it, as the official evaluator
# runs every checkpoint in csa (the K branch of a qq checkpoint is CLIP's untouched K).
_base_ = ['./declip_vitb_dinov2.py']
model = dict(
    student=dict(attn_mode='qq', attn_scale=1.0),
    content_loss=dict(loss_weight=1.0),
    context_loss=dict(loss_weight=0.1, head_mode='merged'))
