# The plain-CLIP baseline of docs/catseg.md (CAT-Seg on OpenAI CLIP ViT-B/16): dense features of the last
# block's value path with its residual and FFN (CAT-Seg's ``forward_dense``, our 'maskclip' mode).
_base_ = './catseg_declip_eva02-b16.py'
clip_model = 'ViT-B-16'
clip_weights = 'weights/ViT-B-16.pt'
model = dict(
    backbone=dict(model_name=clip_model, pretrained=clip_weights, attn_mode='maskclip',
                  default_attn_scale=None),  # maskclip has no attention map: tau does not enter
    text_encoder=dict(model_name=clip_model, pretrained=clip_weights))
