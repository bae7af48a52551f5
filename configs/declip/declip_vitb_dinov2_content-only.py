# Ablation: content distillation only (no VFM teacher, no context loss).
_base_ = ['./declip_vitb_dinov2.py']
model = dict(vfm_teacher=None, context_loss=None)
