# voc20 val for the training-free protocol (docs/method.md §4): VOC2012 val with the background ignored;
# same images, resize and split as voc21.
_base_ = './tf_voc21.py'
test_dataloader = dict(dataset=dict(type='DeCLIPPascalVOC20Dataset'))
val_dataloader = test_dataloader
