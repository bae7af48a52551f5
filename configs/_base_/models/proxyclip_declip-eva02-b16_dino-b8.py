# DeCLIP EVA02-B/16 export + DINO ViT-B/8 proxy (new combination; no published number).
# docs/method.md §7. Weight files are local; a missing file is an error when the model is built.
_base_ = './proxyclip_zero_shot.py'
model = dict(
    backbone=dict(model_name='EVA02-B-16', pretrained='weights/EVA02_CLIP_B_psz16_s8B.pt',
                  pos_embed_offset=0.0),  # EVA02: the bicubic resize to the grid (§1)
    text_encoder=dict(model_name='EVA02-B-16', pretrained='weights/EVA02_CLIP_B_psz16_s8B.pt'),
    vfm=dict(arch='dino_vitb8', pretrained='weights/dino_vitbase8_pretrain.pth'))
