# Ablation on the world (docs/miniworld.md): content distillation only (no VFM teacher, no context
# loss), as ../declip/declip_vitb_dinov2_content-only.py does on the entry recipe.
_base_ = ['./declip_tiny-clip_tiny-vfm_miniworld.py']
model = dict(vfm_teacher=None, context_loss=None)
