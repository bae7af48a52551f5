# Region classification on COCO-panoptic val2017 (protocol: README, region classification) with OpenAI CLIP ViT-B/16: 560 letterbox
# (35 x 35 tokens), crops at 224, csa content map with tau = 1/sqrt(d) (as
# declip_openai-vitb16_dinov2.py trains).
_base_ = ['./region-cls_eva02-b16_coco-panoptic-560.py']
clip_model = 'ViT-B-16'
clip_weights = 'weights/ViT-B-16.pt'
model = dict(
    backbone=dict(model_name=clip_model, pretrained=clip_weights, attn_scale=None),
    text_encoder=dict(model_name=clip_model, pretrained=clip_weights))
