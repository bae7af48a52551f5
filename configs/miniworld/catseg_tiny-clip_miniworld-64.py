# The CAT-Seg-style head on the world from the plain tiny CLIP: the baseline of
# ./catseg_declip-tiny-clip_miniworld-64.py (same head, data and schedule), with the dense features
# of the plain-CLIP baseline config ../catseg/catseg_openai-vitb16_*.py (maskclip: the last block's
# value path).
_base_ = ['./catseg_declip-tiny-clip_miniworld-64.py']
model = dict(backbone=dict(pretrained={{_base_.clip_weights}}, attn_mode='maskclip'))
