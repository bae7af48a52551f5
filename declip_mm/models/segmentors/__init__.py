from .catseg_segmentor import DeCLIPCATSegSegmentor
from .proxy_segmentor import DeCLIPProxySegmentor
from .seg_tta import DeCLIPSegTTAModel
from .zero_shot_segmentor import DeCLIPZeroShotSegmentor

__all__ = ['DeCLIPZeroShotSegmentor', 'DeCLIPSegTTAModel', 'DeCLIPCATSegSegmentor',
           'DeCLIPProxySegmentor']
