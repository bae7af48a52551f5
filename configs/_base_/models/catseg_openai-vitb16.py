# The plain-CLIP baseline of docs/catseg.md (CAT-Seg on OpenAI CLIP ViT-B/16): dense features of the last
# block's value path, the class token's residual added to every token, then the FFN (KU-CVLAB CAT-Seg's
# ``forward_dense``: ``v = v.transpose(1, 0) + x[:1]``; our 'maskclip' mode with maskclip_residual='cls').
_base_ = './catseg_declip_eva02-b16.py'
clip_model = 'ViT-B-16'
clip_weights = 'weights/ViT-B-16.pt'
model = dict(
    backbone=dict(model_name=clip_model, pretrained=clip_weights, attn_mode='maskclip',
                  maskclip_residual='cls',
                  default_attn_scale=None),  # maskclip has no attention map: tau does not enter
    text_encoder=dict(model_name=clip_model, pretrained=clip_weights))
