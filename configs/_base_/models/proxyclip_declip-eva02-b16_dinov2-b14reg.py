# DeCLIP EVA02-B/16 export + DINOv2 ViT-B/14-reg proxy (new combination; no published number).
# docs/method.md §7. Weight files are local; a missing file is an error when the model is built.
_base_ = './proxyclip_zero_shot.py'
model = dict(
    backbone=dict(model_name='EVA02-B-16', pretrained='weights/EVA02_CLIP_B_psz16_s8B.pt',
                  pos_embed_offset=0.0),  # EVA02: the bicubic resize to the grid (§1)
    text_encoder=dict(model_name='EVA02-B-16', pretrained='weights/EVA02_CLIP_B_psz16_s8B.pt'),
    vfm=dict(arch='dinov2_vitb14_reg', pretrained='weights/dinov2_vitb14_reg4_pretrain.pth'))
