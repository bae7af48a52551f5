# Region classification on COCO-panoptic val2017 (protocol: README, region classification) with EVA02-CLIP-B/16: 560 letterbox
# (35 x 35 tokens), crops at 224, csa content map with tau 1.0 (as declip_vitb_dinov2.py trains).
#   python tools/test.py configs/region_cls/region-cls_eva02-b16_coco-panoptic-560.py \
#       [work_dirs/declip_vitb_dinov2/declip_epoch_6.pth]
_base_ = [
    '../_base_/models/region_classifier.py',
    '../_base_/datasets/coco_panoptic_regions.py',
    '../_base_/tf_runtime.py',
]
custom_imports = dict(imports=['declip_mm'], allow_failed_imports=False)
