# Beyond the paper (docs/method.md §6): the entry-point recipe with the last 3 blocks decoupled.
# Blocks 10 and 11 (of 12) stay normal blocks on the main path and add their context Q, K to the
# context loss (side outputs); block 12 is decoupled as in the paper, and the content loss stays on
# its final content map. The exported tower is evaluated exactly like the paper's (csa, last block).
# The per-block weights are our choice (not from a paper or public code): the last block keeps the
# recipe's lambda, the two earlier ones half of it each.
#   python tools/train.py configs/declip/declip_vitb_dinov2_ml3.py
_base_ = ['./declip_vitb_dinov2.py']
model = dict(
    student=dict(decouple_last=3),
    context_block_weights=(0.5, 0.5, 1.0))
