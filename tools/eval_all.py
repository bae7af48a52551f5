#!/usr/bin/env python
"""Run the eight training-free benchmarks and print the table (Markdown), also written as CSV/JSON.

    python tools/eval_all.py [CHECKPOINT] --data-root data [--work-dir work_dirs/eval_all]
                             [--benchmarks voc21 context60 ...] [--cfg-options k=v ...]

Every benchmark uses its config in configs/training_free/ (protocol of docs/method.md §4). ``--data-root`` is
the folder holding the datasets in their standard layouts (see docs/datasets.md); each config's
``data_root`` is re-rooted below it. ``--cfg-options`` apply to every config (e.g. tiny models).
"""
import argparse
import copy
import csv
import json
import os
import os.path as osp
import time

from mmengine.config import Config, DictAction

BENCHMARKS = ['voc21', 'context60', 'coco_object', 'voc20', 'context59', 'coco_stuff164k',
              'cityscapes', 'ade20k']
TITLES = dict(voc21='VOC21', context60='Context60', coco_object='Object', voc20='VOC20',
              context59='Context59', coco_stuff164k='Stuff', cityscapes='City', ade20k='ADE')
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def config_path(name: str, config_dir: str) -> str:
    hits = [f for f in sorted(os.listdir(config_dir)) if f.endswith('.py') and f'_{name}-' in f]
    if len(hits) != 1:
        raise FileNotFoundError(f'expected one config for {name} in {config_dir}, found {hits}')
    return osp.join(config_dir, hits[0])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='declip_mm: evaluate the eight training-free benchmarks')
    p.add_argument('checkpoint', nargs='?', default=None, help='CLIP / DeCLIP checkpoint (optional)')
    p.add_argument('--data-root', default='data', help='folder holding the datasets (default: data)')
    p.add_argument('--config-dir', default=osp.join(ROOT, 'configs', 'training_free'))
    p.add_argument('--benchmarks', nargs='+', default=BENCHMARKS, choices=BENCHMARKS)
    p.add_argument('--work-dir', default='work_dirs/eval_all')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='applied to every config')
    return p.parse_args(argv)


def format_table(results: dict) -> str:
    cols = [b for b in BENCHMARKS if b in results]
    head = '| ' + ' | '.join(TITLES[c] for c in cols) + ' | Avg |'
    sep = '|' + '---|' * (len(cols) + 1)
    vals = [results[c] for c in cols]
    avg = sum(vals) / len(vals) if vals else float('nan')
    row = '| ' + ' | '.join(f'{v:.1f}' for v in vals) + f' | {avg:.1f} |'
    return '\n'.join([head, sep, row])


def main(argv=None):
    args = parse_args(argv)
    import declip_mm  # noqa: F401
    from declip_mm.apis import prepare_test_runner
    os.makedirs(args.work_dir, exist_ok=True)
    results, details = {}, {}
    t_all = time.time()
    for i, name in enumerate(args.benchmarks, 1):
        path = config_path(name, args.config_dir)
        cfg = Config.fromfile(path)
        if args.cfg_options:
            cfg.merge_from_dict(copy.deepcopy(args.cfg_options))
        # re-root: 'data/VOCdevkit/VOC2012' -> '<data-root>/VOCdevkit/VOC2012'
        rel = cfg.test_dataloader.dataset.data_root
        rel = rel[len('data/'):] if rel.startswith('data/') else rel
        cfg.test_dataloader.dataset.data_root = osp.join(args.data_root, rel)
        print(f'[{i}/{len(args.benchmarks)}] {name}: {osp.basename(path)} on '
              f'{cfg.test_dataloader.dataset.data_root}', flush=True)
        t0 = time.time()
        runner = prepare_test_runner(cfg, args.checkpoint, osp.join(args.work_dir, name), path)
        metrics = runner.test()
        results[name] = float(metrics['mIoU'])
        details[name] = dict({k: float(v) for k, v in metrics.items()},
                             seconds=round(time.time() - t0, 1), config=path)
        print(f'[{i}/{len(args.benchmarks)}] {name}: mIoU {results[name]:.2f} '
              f'({time.time() - t0:.0f} s)', flush=True)
    table = format_table(results)
    print('\n' + table + '\n')
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(mIoU=results, details=details, checkpoint=args.checkpoint), f, indent=2)
    with open(osp.join(args.work_dir, 'results.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        cols = [b for b in BENCHMARKS if b in results]
        w.writerow([TITLES[c] for c in cols] + ['Avg'])
        w.writerow([f'{results[c]:.2f}' for c in cols]
                   + [f'{sum(results.values()) / len(results):.2f}'])
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(table + '\n')
    print(f'wrote {args.work_dir}/results.{{md,csv,json}} ({time.time() - t_all:.0f} s in all)')
    return results


if __name__ == '__main__':
    main()
