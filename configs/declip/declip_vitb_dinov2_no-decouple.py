# Ablation: content + context distillation *without* decoupling: the plain last block (vanilla
# attention, residual and FFN) and the context loss on the content features' own correlation.
_base_ = ['./declip_vitb_dinov2.py']
model = dict(student=dict(attn_mode='vanilla'), context_source='content')
