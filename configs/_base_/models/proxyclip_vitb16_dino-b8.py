# OpenAI CLIP ViT-B/16 + DINO ViT-B/8 (the public default, configs/base_config.py).
# docs/method.md §7. Weight files are local; a missing file is an error when the model is built.
_base_ = './proxyclip_zero_shot.py'
model = dict(vfm=dict(arch='dino_vitb8', pretrained='weights/dino_vitbase8_pretrain.pth'))
