from .content_distill_loss import ContentDistillLoss, region_features
from .context_distill_loss import ContextDistillLoss, token_correlation

__all__ = ['ContentDistillLoss', 'ContextDistillLoss', 'region_features', 'token_correlation']
