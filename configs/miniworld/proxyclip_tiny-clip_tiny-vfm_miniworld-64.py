# ProxyCLIP-style proxy attention on the miniature world (issue 23.5, docs/miniworld.md, docs/method.md §7):
# the world's training-free config (benchmark, 64-px windows, class names, templates, logit scale)
# with the tiny CLIP's last block in attn_mode='proxy' (ProxyCLIP's beta 1.2 / gamma 3.0) and the
# tiny VFM (timm DINO ViT/8 shrunk, patch 8 = the CLIP's grid) as the proxy, run on the same window.
# Only the attention differs from the training-free rows of the table, so the two compare directly.
# The plain tiny CLIP, or a DeCLIP export of it (the new combination):
#   python tools/test.py THIS [declip_epoch_N.pth] --cfg-options \
#       test_dataloader.dataset.data_root=OUT/ade/ADEChallengeData2016 \
#       model.backbone.model_name=CLIP.json model.backbone.pretrained=CLIP.pt \
#       model.text_encoder.model_name=CLIP.json model.text_encoder.pretrained=CLIP.pt \
#       model.vfm.pretrained=VFM.pth
# (tools/miniworld.py --phases proxy sets all of these, and the VFM's arch_overrides from vfm.json).
_base_ = ['./declip_tiny-clip_training-free_miniworld-64.py']
vfm_weights = 'work_dirs/miniworld/vfm/vfm.pth'       # the tiny VFM (VFMTeacher timm keys)
model = dict(
    type='DeCLIPProxySegmentor',
    backbone=dict(attn_mode='proxy', proxy_beta=1.2, proxy_gamma=3.0),
    vfm=dict(type='ProxyVFM', arch='dino_vitb8', pretrained=vfm_weights, precision=None,
             arch_overrides=dict(embed_dim=96, depth=4, num_heads=3, img_size=64)))
