# OpenAI CLIP ViT-B/16 + SAM ViT-B image encoder at 1024 (vfm_model='sam').
# docs/method.md §7. Weight files are local; a missing file is an error when the model is built.
_base_ = './proxyclip_zero_shot.py'
model = dict(vfm=dict(arch='sam_vitb', pretrained='weights/sam_vit_b_01ec64.pth'))
