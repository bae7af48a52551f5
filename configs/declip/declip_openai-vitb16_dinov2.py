# DeCLIP on OpenAI-CLIP ViT-B/16 (QuickGELU) with DINOv2-B/14 (registers): the entry-point recipe
# (csa, context weight 0.25, heads merged) on the OpenAI tower. No public script or release trains
# this tower; two settings follow the official trainer for OpenAI ViT names:
#   tau = 1/sqrt(d) (its OpenAI csa/ss attention keeps the scale), and AdamW betas (0.9, 0.98),
#   eps 1e-6 (params.py get_default_params: every model name containing "vit"; the EVA names get
#   (0.9, 0.999) / 1e-8).
_base_ = ['./declip_vitb_dinov2.py']
model = dict(student=dict(model_name='ViT-B-16', pretrained='weights/ViT-B-16.pt', attn_scale=None))
optim_wrapper = dict(optimizer=dict(betas=(0.9, 0.98), eps=1e-6))
