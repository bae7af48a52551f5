# Reproduces the public training script `scripts/dist_DeCLIP_eva_vitL14_336_coco.sh` of the official
# DeCLIP repository (main branch) with its default vfm_type=dinov2-L:
#   EVA02-CLIP-L/14-336, --mode qq_vfm_distill (context = Q, k_proj frozen), tau 1,
#   --loss_context_weight 0.1 --loss_content_weight 1.0, --det-image-size 560 (40 x 40 tokens),
#   --alpha 0.95, 4 GPUs x --batch-size 2, --lr 1e-5 --wd 0.1 --epochs 6 --warmup 1000.
_base_ = ['./declip_vitl_dinov2.py']
model = dict(
    student=dict(attn_mode='qq', attn_scale=1.0),
    content_loss=dict(loss_weight=1.0),
    context_loss=dict(loss_weight=0.1, head_mode='merged'))
