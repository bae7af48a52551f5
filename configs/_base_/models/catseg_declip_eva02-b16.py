# CAT-Seg-style head on DeCLIP EVA02-B/16 content features (docs/catseg.md). Weights and mode live in these
# variables; override with --cfg-options or pass a checkpoint to tools/test.py (a DeCLIP export
# becomes model.backbone.pretrained, a trained CAT-Seg checkpoint is loaded whole).
clip_model = 'EVA02-B-16'                           # open_clip name, or a JSON model-config file
clip_weights = 'weights/EVA02_CLIP_B_psz16_s8B.pt'  # original CLIP: text tower (+ image tower if no DeCLIP)
declip_weights = clip_weights                       # a DeCLIP export, e.g. work_dirs/.../declip_epoch_6.pth
attn_mode = 'csa'                                   # DeCLIP content features (the released checkpoints' mode)

data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
    std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(384, 384))  # training batches only (test images are not padded)
model = dict(
    type='DeCLIPCATSegSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='DeCLIPVisionTransformer', model_name=clip_model, pretrained=declip_weights,
                  attn_mode=attn_mode, out_indices=(3, 7),
                  # tau: attn_scale is left unset ('auto'): the tau stored in a declip_mm export's
                  # meta, else 1.0 -- DeCLIP's EVA training and its CAT-Seg branch use tau = 1
                  # (eva_vit_model.py ss_attn, scale commented out). Setting attn_scale overrides
                  # both (a warning names a different stored tau).
                  default_attn_scale=1.0),
    text_encoder=dict(type='DeCLIPTextEncoder', model_name=clip_model, pretrained=clip_weights,
                      templates='catseg'),
    # channel numbers of the towers (text/feat/backbone channels, prompts) are filled in by the
    # segmentor; the rest is CAT-Seg's configs/vitb_384.yaml
    decode_head=dict(
        type='DeCLIPCATSegHead',
        embed_dims=128,
        appearance_guidance_dims=128,
        text_guidance_dims=128,
        num_layers=2,
        num_heads=4,
        window_size=12,
        pad_len=256,
        pool_size=2,
        decoder_channels=(64, 32),
        guidance_channels=(256, 128),
        guidance_proj_channels=(32, 16),
        ignore_index=255),
    class_names=None,            # set by each dataset config
    name_separator=';',
    # the public rule (DeCLIP's CAT-Seg branch for EVA02, KU-CVLAB/CAT-Seg for OpenAI towers): the
    # image tower's Q/V projection weights; the text tower's in_proj_weight (Q, K, V rows for EVA02,
    # Q, V rows for OpenAI); no biases, no position embeddings
    clip_finetune='attention',
    text_qkv_rows=None,          # None: by tower family ('qkv' EVA02, 'qv' OpenAI)
    normalize_content=None,      # None: by family (EVA02: encode_dense(normalize=True), as DeCLIP's branch)
    clip_size=None,              # 384 crops go to the backbone as they are (24x24 tokens)
    test_cfg=dict(mode='catseg', size=640, crop_size=384, stride=256, global_view=True,
                  batch_size=5))
