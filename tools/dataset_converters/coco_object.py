#!/usr/bin/env python
"""Build COCO-Object label maps from COCO-Stuff164k label maps.

    python tools/dataset_converters/coco_object.py data/coco_stuff164k [--split val2017] [--nproc 4]

Reads ``annotations/<split>/*_labelTrainIds.png`` (mmseg's COCO-Stuff converter output: train ids
0..79 are the 80 things, 80..170 stuff, 255 unlabelled) and writes
``annotations/<split>/*_instanceTrainIds.png`` with thing id t -> t + 1 (1..80) and stuff and 255 -> 0
(background), the COCO-Object benchmark (81 classes) of the training-free protocol.
"""
import argparse
import glob
import os.path as osp
from multiprocessing import Pool

import numpy as np
from PIL import Image

SUFFIX_IN = '_labelTrainIds.png'
SUFFIX_OUT = '_instanceTrainIds.png'


def stuff_to_object(label: np.ndarray) -> np.ndarray:
    """COCO-Stuff train ids -> COCO-Object ids (things 1..80, everything else 0)."""
    out = np.zeros_like(label, dtype=np.uint8)
    thing = label < 80
    out[thing] = label[thing] + 1
    return out


def convert_one(path: str) -> str:
    label = np.asarray(Image.open(path))
    if label.ndim != 2:
        raise ValueError(f'{path}: expected a single-channel label map, got shape {label.shape}')
    out = path[:-len(SUFFIX_IN)] + SUFFIX_OUT
    Image.fromarray(stuff_to_object(label)).save(out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('coco_stuff_root', help='e.g. data/coco_stuff164k')
    p.add_argument('--split', default='val2017', help='annotation split folder (default: val2017)')
    p.add_argument('--nproc', type=int, default=4)
    args = p.parse_args(argv)
    ann_dir = osp.join(args.coco_stuff_root, 'annotations', args.split)
    files = sorted(glob.glob(osp.join(ann_dir, '*' + SUFFIX_IN)))
    if not files:
        raise SystemExit(f'no *{SUFFIX_IN} files in {ann_dir}; run mmseg\'s coco_stuff164k converter '
                         'first (see docs/datasets.md)')
    if args.nproc > 1:
        with Pool(args.nproc) as pool:
            for i, _ in enumerate(pool.imap_unordered(convert_one, files, chunksize=64), 1):
                if i % 500 == 0 or i == len(files):
                    print(f'{i}/{len(files)}', flush=True)
    else:
        for f in files:
            convert_one(f)
    print(f'wrote {len(files)} COCO-Object label maps to {ann_dir}')


if __name__ == '__main__':
    main()
