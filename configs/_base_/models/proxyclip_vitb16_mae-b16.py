# OpenAI CLIP ViT-B/16 + MAE ViT-B/16 at the window size (vfm_model='mae').
# docs/method.md §7. Weight files are local; a missing file is an error when the model is built.
_base_ = './proxyclip_zero_shot.py'
model = dict(vfm=dict(arch='mae_vitb16', pretrained='weights/mae_pretrain_vit_base.pth'))
