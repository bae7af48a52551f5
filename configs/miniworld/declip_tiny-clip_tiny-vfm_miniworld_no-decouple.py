# Ablation on the world (docs/miniworld.md): content + context *without* decoupling, as
# ../declip/declip_vitb_dinov2_no-decouple.py: the plain last block (vanilla attention, residual, FFN)
# and the context loss on the content features' own correlation.
_base_ = ['./declip_tiny-clip_tiny-vfm_miniworld.py']
model = dict(student=dict(attn_mode='vanilla'), context_source='content')
