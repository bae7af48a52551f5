# CAT-Seg-style head on DeCLIP EVA02-L/14-336 (docs/catseg.md): 384 crops and windows are resized to 336
# (24x24 tokens, CAT-Seg's clip_resolution for L); the decoder is guided by blocks 7 and 15.
_base_ = './catseg_declip_eva02-b16.py'
clip_model = 'EVA02-L-14-336'
clip_weights = 'weights/EVA02_CLIP_L_336_psz14_s6B.pt'
declip_weights = clip_weights  # a DeCLIP ViT-L export
model = dict(
    backbone=dict(model_name=clip_model, pretrained=declip_weights, out_indices=(7, 15)),
    text_encoder=dict(model_name=clip_model, pretrained=clip_weights),
    clip_size=336)
