# DeCLIP on OpenAI-CLIP ViT-B/16 (QuickGELU) with DINOv2-B/14 (registers); tau = 1/sqrt(d).
_base_ = ['./declip_vitb_dinov2.py']
model = dict(student=dict(model_name='ViT-B-16', pretrained='weights/ViT-B-16.pt', attn_scale=None))
