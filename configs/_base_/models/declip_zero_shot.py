# The training-free DeCLIP segmentor (docs/method.md §4). Weights and mode live in these variables only;
# override with --cfg-options (e.g. model.backbone.pretrained=work_dirs/x/declip_epoch_6.pth) or pass
# the checkpoint to tools/test.py.
clip_model = 'EVA02-B-16'                        # open_clip name, or a JSON model-config file
clip_weights = 'weights/EVA02_CLIP_B_psz16_s8B.pt'  # original CLIP (text tower; image tower if no DeCLIP)
declip_weights = clip_weights                    # a DeCLIP-tuned image tower (tools/test.py CHECKPOINT)
attn_mode = 'csa'                                # what the official evaluator ran, for every config
attn_scale = None                                # 1/sqrt(d): the evaluator's tau, whatever training used

data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
    std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='DeCLIPZeroShotSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='DeCLIPVisionTransformer', model_name=clip_model, pretrained=declip_weights,
                  attn_mode=attn_mode, attn_scale=attn_scale),
    text_encoder=dict(type='DeCLIPTextEncoder', model_name=clip_model, pretrained=clip_weights,
                      templates='imagenet80'),
    class_names=None,     # set by each benchmark config
    name_separator=';',
    logit_scale=40.0,
    prob_thd=0.0,
    area_thd=None,
    test_cfg=dict(mode='slide', crop_size=336, stride=112, batch_size=16))
