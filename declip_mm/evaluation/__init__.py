from .region_cls_metric import RegionClassificationMetric, mean_class_accuracy

__all__ = ['RegionClassificationMetric', 'mean_class_accuracy']
