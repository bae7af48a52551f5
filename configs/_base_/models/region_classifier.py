# Zero-shot region classifier (protocol: README, region classification). Weights and mode live in these variables only; override
# with --cfg-options or pass a CLIP / DeCLIP checkpoint to tools/test.py (it becomes
# model.backbone.pretrained; its stored attn_mode must match attn_mode below).
clip_model = 'EVA02-B-16'                           # open_clip name, or a JSON model-config file
clip_weights = 'weights/EVA02_CLIP_B_psz16_s8B.pt'  # original CLIP (text tower; image tower if no DeCLIP)
declip_weights = clip_weights                       # the image tower to evaluate
attn_mode = 'csa'       # the mode the tower was trained in (the content map of rois / maskpool)
attn_scale = 1.0        # tau of training (declip_vitb_dinov2.py: 1.0 for EVA02; None = 1/sqrt(d))
model = dict(
    type='DeCLIPRegionClassifier',
    data_preprocessor=dict(type='RegionDataPreprocessor'),
    backbone=dict(type='DeCLIPVisionTransformer', model_name=clip_model, pretrained=declip_weights,
                  attn_mode=attn_mode, attn_scale=attn_scale),
    # the official 133 COCO-panoptic embeddings: 63 hand-crafted templates with the article rule
    text_encoder=dict(type='DeCLIPTextEncoder', model_name=clip_model, pretrained=clip_weights,
                      templates='vild_hand_craft'),
    features=('rois', 'maskpool', 'crops'),
    topk=5,
    crop_batch_size=64,
    embedding_cache_dir='work_dirs/region_cls_text_cache')  # per text weights, templates and names
