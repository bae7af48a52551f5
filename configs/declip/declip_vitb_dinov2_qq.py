# Ablation: qq attention in the decoupled block (context = Q only; k_proj of the last block frozen) on
# top of the entry-point recipe (context weight 0.25). The public training script's own qq run
# (context weight 0.1) is declip_eva02-b16_dinov2-b_4xb4-6e_coco-560_qq-0.1-script.py.
_base_ = ['./declip_vitb_dinov2.py']
model = dict(student=dict(attn_mode='qq'))
