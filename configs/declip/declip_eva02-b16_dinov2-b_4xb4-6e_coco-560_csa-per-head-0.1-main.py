# Reproduces the official main branch run in csa: `scripts/dist_DeCLIP_eva_vitb16_coco.sh` with
# `--mode csa_vfm_distill`, whose loss (src/training/declip.py) normalises Q and K per attention head
# and compares the teacher correlation with every head's (head_mode='per_head'). The public code
# only runs that at one image per GPU; here it runs at the script's 4 images per GPU.
#   csa, tau 1, context weight 0.1, content weight 1.0, letterbox 560, alpha 0.7.
_base_ = ['./declip_vitb_dinov2.py']
model = dict(
    student=dict(attn_mode='csa', attn_scale=1.0),
    content_loss=dict(loss_weight=1.0),
    context_loss=dict(loss_weight=0.1, head_mode='per_head'))
