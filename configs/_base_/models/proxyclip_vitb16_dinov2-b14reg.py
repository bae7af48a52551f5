# OpenAI CLIP ViT-B/16 + DINOv2 ViT-B/14 with registers (vfm_model='dinov2').
# docs/method.md §7. Weight files are local; a missing file is an error when the model is built.
_base_ = './proxyclip_zero_shot.py'
model = dict(vfm=dict(arch='dinov2_vitb14_reg',
                       pretrained='weights/dinov2_vitb14_reg4_pretrain.pth'))
