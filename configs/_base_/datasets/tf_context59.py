# context59 val for the training-free protocol (docs/method.md §4): Pascal Context without the background
# (reduce_zero_label); same images, resize and split as context60.
_base_ = './tf_context60.py'
test_dataloader = dict(dataset=dict(type='DeCLIPPascalContext59Dataset'))
val_dataloader = test_dataloader
