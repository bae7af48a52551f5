#!/usr/bin/env python
"""Run the three CAT-Seg benchmarks (ADE150, Pascal Context 59, Cityscapes; docs/catseg.md) and print the
mIoU table next to the published numbers (Markdown; also written as JSON).

    python tools/eval_catseg.py CHECKPOINT --data-root data [--variant declip-eva02-b16]
                                [--benchmarks ade20k context59 cityscapes] [--work-dir DIR]
                                [--cfg-options k=v ...]

CHECKPOINT: a trained CAT-Seg segmentor checkpoint (``work_dirs/<train config>/iter_80000.pth``).
Configs: ``configs/catseg/catseg_<variant>_<benchmark>-640x640.py``; each config's ``data_root`` is
re-rooted below ``--data-root``; ``--cfg-options`` apply to every config.
"""
import argparse
import copy
import json
import os
import os.path as osp
import time

from mmengine.config import Config, DictAction


def parse_args(argv=None):
    from declip_mm.apis.catseg_suite import CATSEG_BENCHMARKS, CATSEG_VARIANTS
    p = argparse.ArgumentParser(description='declip_mm: evaluate the three CAT-Seg benchmarks')
    p.add_argument('checkpoint', nargs='?', default=None, help='CAT-Seg segmentor checkpoint')
    p.add_argument('--data-root', default='data', help='folder holding the datasets (default: data)')
    p.add_argument('--variant', default='declip-eva02-b16', choices=CATSEG_VARIANTS)
    p.add_argument('--benchmarks', nargs='+', default=list(CATSEG_BENCHMARKS),
                   choices=list(CATSEG_BENCHMARKS))
    p.add_argument('--work-dir', default='work_dirs/eval_catseg')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='applied to every config')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import declip_mm  # noqa: F401
    from declip_mm.apis import prepare_test_runner
    from declip_mm.apis.catseg_suite import catseg_config, format_catseg_table
    os.makedirs(args.work_dir, exist_ok=True)
    results, details = {}, {}
    for i, name in enumerate(args.benchmarks, 1):
        path = catseg_config(name, args.variant)
        cfg = Config.fromfile(path)
        if args.cfg_options:
            cfg.merge_from_dict(copy.deepcopy(args.cfg_options))
        rel = cfg.test_dataloader.dataset.data_root
        rel = rel[len('data/'):] if rel.startswith('data/') else rel
        cfg.test_dataloader.dataset.data_root = osp.join(args.data_root, rel)
        print(f'[{i}/{len(args.benchmarks)}] {name}: {osp.basename(path)}', flush=True)
        t0 = time.time()
        runner = prepare_test_runner(cfg, args.checkpoint, osp.join(args.work_dir, name), path)
        metrics = runner.test()
        results[name] = float(metrics['mIoU'])
        details[name] = dict({k: float(v) for k, v in metrics.items()},
                             seconds=round(time.time() - t0, 1), config=path)
    table = format_catseg_table(results, label=f'{args.variant} (this run)')
    print('\n' + table + '\n')
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(mIoU=results, details=details, checkpoint=args.checkpoint,
                       variant=args.variant), f, indent=2)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(table + '\n')
    return results


if __name__ == '__main__':
    main()
