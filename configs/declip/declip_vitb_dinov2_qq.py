# Ablation: qq attention in the decoupled block (context = Q only; k_proj of the last block frozen).
_base_ = ['./declip_vitb_dinov2.py']
model = dict(student=dict(attn_mode='qq'))
