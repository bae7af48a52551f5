# Ablation on the world (docs/miniworld.md): context distillation only. The content loss is kept in the
# graph with weight 0 (DeCLIPDistiller always builds one), so only the context loss (Q and K of the
# csa block against the tiny VFM's correlations) moves the weights.
_base_ = ['./declip_tiny-clip_tiny-vfm_miniworld.py']
model = dict(content_loss=dict(type='ContentDistillLoss', loss_weight=0.0))
