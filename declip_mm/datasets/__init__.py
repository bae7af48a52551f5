from .benchmarks import (COCO_THING_CLASSES, DeCLIPCOCOObjectDataset, DeCLIPPascalContext59Dataset,
                         DeCLIPPascalContext60Dataset, DeCLIPPascalVOC20Dataset)
from .class_names import check_class_names, load_class_names

__all__ = ['DeCLIPPascalVOC20Dataset', 'DeCLIPCOCOObjectDataset', 'DeCLIPPascalContext60Dataset',
           'DeCLIPPascalContext59Dataset', 'COCO_THING_CLASSES', 'load_class_names',
           'check_class_names']
