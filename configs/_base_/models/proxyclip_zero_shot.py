# ProxyCLIP-style training-free segmentor (docs/method.md §7): the CLIP (or DeCLIP) image tower in
# attn_mode='proxy', a frozen VFM on the same window, the ProxyCLIP settings (window 336 / stride 112,
# logit scale 40, beta 1.2, gamma 3.0; mc-lan/ProxyCLIP proxyclip_segmentor.py and configs/).
# The variant bases (proxyclip_<clip>_<vfm>.py) set the towers and weight files.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
    std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='DeCLIPProxySegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='DeCLIPVisionTransformer', model_name='ViT-B-16',
                  pretrained='weights/ViT-B-16.pt', attn_mode='proxy', proxy_beta=1.2,
                  proxy_gamma=3.0,
                  pos_embed_offset=0.1),  # ProxyCLIP's open_clip: scale_factor (n + 0.1) / M
    text_encoder=dict(type='DeCLIPTextEncoder', model_name='ViT-B-16',
                      pretrained='weights/ViT-B-16.pt', templates='imagenet80'),
    vfm=dict(type='ProxyVFM', arch='dino_vitb8', pretrained='weights/dino_vitbase8_pretrain.pth',
             precision=None),  # None: fp32 (CPU); 'fp16' as the public code on a GPU
    class_names=None,     # set by each benchmark config
    name_separator=';',
    logit_scale=40.0,
    prob_thd=0.0,
    area_thd=None,
    test_cfg=dict(mode='slide', crop_size=336, stride=112, batch_size=16))
