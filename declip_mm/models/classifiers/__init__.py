from .region_classifier import REGION_FEATURES, DeCLIPRegionClassifier, mask_pool
from .region_data_preprocessor import RegionDataPreprocessor

__all__ = ['DeCLIPRegionClassifier', 'RegionDataPreprocessor', 'mask_pool', 'REGION_FEATURES']
