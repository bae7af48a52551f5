# Reproduces the release `DeCLIP_EVA-B_DINOv2-B_csa_0.05_2.0` (EVA02-CLIP-B/16 + DINOv2-B/14 reg), the
# DeCLIP backbone the official DeCLIP_CATSeg branch fine-tunes with CAT-Seg (ADE150 36.57, PC59 60.89
# with its CAT-Seg release `CATSeg_DeCLIP_EVA-B_DINOv2-B_csa_0.05_2.0`).
#   csa, tau 1, student letterbox 560, heads merged.
# Inferred from the release name, not confirmed by public code: context weight 0.05 and content
# weight 2.0 (read in the order of the scripts' --loss_context_weight / --loss_content_weight; the
# name does not say what "2.0" is). The CAT-Seg fine-tuning itself is not part of declip_mm yet.
_base_ = ['./declip_vitb_dinov2.py']
model = dict(
    student=dict(attn_mode='csa', attn_scale=1.0),
    content_loss=dict(loss_weight=2.0),
    context_loss=dict(loss_weight=0.05, head_mode='merged'))
