from .benchmarks import (
                         COCO_THING_CLASSES,
                         DeCLIPCOCOObjectDataset,
                         DeCLIPPascalContext59Dataset,
                         DeCLIPPascalContext60Dataset,
                         DeCLIPPascalVOC20Dataset,
)
from .class_names import check_class_names, load_class_names
from .coco_panoptic_regions import COCOPanopticRegionDataset
from .image_check import truncation_reason
from .loading import DeCLIPLoadImage
from .panoptic_regions import LoadPanopticRegions, PackRegionInputs
from .transforms import GRID_LAYOUTS, DeCLIPGridCrops, DeCLIPLetterbox, LoadImageOrSkip, PackDeCLIPInputs
from .unlabeled_images import UnlabeledImageDataset, iter_coco_image_files

__all__ = ['DeCLIPPascalVOC20Dataset', 'DeCLIPCOCOObjectDataset', 'DeCLIPPascalContext60Dataset',
           'DeCLIPPascalContext59Dataset', 'COCO_THING_CLASSES', 'load_class_names',
           'check_class_names', 'GRID_LAYOUTS', 'DeCLIPGridCrops', 'DeCLIPLetterbox',
           'LoadImageOrSkip', 'PackDeCLIPInputs', 'COCOPanopticRegionDataset',
           'LoadPanopticRegions', 'PackRegionInputs', 'UnlabeledImageDataset', 'iter_coco_image_files',
           'DeCLIPLoadImage', 'truncation_reason']
