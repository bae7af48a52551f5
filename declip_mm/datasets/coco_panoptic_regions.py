"""COCO-panoptic val2017 as a region-classification dataset (protocol: README, region classification).

mmdet's layout below ``data_root``::

    annotations/panoptic_val2017.json
    annotations/panoptic_val2017/*.png     (unzipped from annotations/panoptic_val2017.zip)
    val2017/*.jpg

Classes are the json's ``categories`` sorted by id, numbered 0..C-1 (133 on COCO: 80 things, 53
stuff), as the official evaluator's ``cat_id2label``; the class embeddings follow the same order.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import List, Optional

from mmengine.dataset import BaseDataset

from ..registry import DATASETS

__all__ = ['COCOPanopticRegionDataset']


@DATASETS.register_module()
class COCOPanopticRegionDataset(BaseDataset):
    """One sample per image; its regions are built by ``LoadPanopticRegions``.

    Args:
        data_root (str): the COCO folder.
        ann_file (str): panoptic json, relative to ``data_root``. Defaults to
            ``'annotations/panoptic_val2017.json'``.
        data_prefix (dict): ``img`` (images) and ``seg`` (panoptic PNGs) folders. Defaults to
            ``dict(img='val2017/', seg='annotations/panoptic_val2017/')``.
        pipeline (list): transforms.
        indices (int | sequence, optional): a subset (mmengine's ``indices``).

    ``metainfo``: ``classes`` (names), ``is_thing`` (one bool per class), ``category_ids``.
    Each data info: ``img_path``, ``seg_map_path``, ``img_id`` and ``segments`` (json order; each
    ``id``, ``category_id``, ``label``, ``is_thing``, ``bbox``).
    """

    def __init__(self, data_root: str = '', ann_file: str = 'annotations/panoptic_val2017.json',
                 data_prefix: Optional[dict] = None, pipeline: Optional[list] = None,
                 **kwargs) -> None:
        data_prefix = data_prefix or dict(img='val2017/', seg='annotations/panoptic_val2017/')
        path = ann_file if osp.isabs(ann_file) else osp.join(data_root, ann_file)
        if not osp.isfile(path):
            raise FileNotFoundError(f'panoptic annotation file {path} not found (expected mmdet\'s '
                                    'COCO layout: annotations/panoptic_val2017.json)')
        with open(path) as f:
            self._panoptic = json.load(f)
        cats = sorted(self._panoptic['categories'], key=lambda c: c['id'])
        self._cat = {c['id']: (i, bool(c['isthing'])) for i, c in enumerate(cats)}
        metainfo = dict(classes=tuple(c['name'] for c in cats),
                        is_thing=tuple(bool(c['isthing']) for c in cats),
                        category_ids=tuple(c['id'] for c in cats))
        metainfo.update(kwargs.pop('metainfo', None) or {})
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix,
                         pipeline=pipeline or [], metainfo=metainfo, **kwargs)

    def load_data_list(self) -> List[dict]:
        img_dir, seg_dir = self.data_prefix['img'], self.data_prefix['seg']
        for what, d, hint in (('image', img_dir, 'val2017/'),
                              ('panoptic PNG', seg_dir, 'unzip annotations/panoptic_val2017.zip')):
            if not osp.isdir(d):
                raise FileNotFoundError(f'{what} folder {d} of {self.ann_file} not found ({hint})')
        images = {im['id']: im for im in self._panoptic['images']}
        data_list = []
        for ann in self._panoptic['annotations']:
            im = images.get(ann['image_id'])
            if im is None:
                raise ValueError(f'annotation {ann["file_name"]} refers to image id '
                                 f'{ann["image_id"]} absent from the json\'s images')
            segments = []
            for s in ann['segments_info']:
                if s['category_id'] not in self._cat:
                    raise ValueError(f'segment {s["id"]} of image {ann["image_id"]} has category '
                                     f'{s["category_id"]}, not in the json\'s categories')
                label, is_thing = self._cat[s['category_id']]
                segments.append(dict(id=int(s['id']), category_id=int(s['category_id']),
                                     label=label, is_thing=is_thing, bbox=list(s['bbox'])))
            data_list.append(dict(img_path=osp.join(img_dir, im['file_name']),
                                  seg_map_path=osp.join(seg_dir, ann['file_name']),
                                  img_id=int(ann['image_id']), segments=segments))
        del self._panoptic  # not needed any more; keeps worker copies small
        return data_list

    def get_data_info(self, idx: int) -> dict:
        # the class names travel with each sample: the model builds its class embeddings from them
        info = super().get_data_info(idx)
        info['classes'] = self.metainfo['classes']
        return info
