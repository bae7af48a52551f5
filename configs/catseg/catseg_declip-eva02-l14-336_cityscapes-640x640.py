# Evaluate the CAT-Seg-style head on DeCLIP EVA02-L/14-336 on cityscapes (docs/catseg.md):
# image resized to 640x640, four 384 windows (stride 256) + a global 384 view. Pass a trained checkpoint:
#   python tools/test.py THIS work_dirs/<train config>/iter_80000.pth
_base_ = [
    '../_base_/models/catseg_declip_eva02-l14-336.py',
    '../_base_/datasets/catseg_cityscapes.py',
    '../_base_/tf_runtime.py',
]
custom_imports = dict(imports=['declip_mm'], allow_failed_imports=False)
model = dict(class_names='{{fileDirname}}/../class_names/catseg_cityscapes.txt')
