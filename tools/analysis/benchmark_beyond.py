#!/usr/bin/env python
"""Step time and peak memory of the options beyond the paper (docs/method.md §6), random weights.

    python tools/analysis/benchmark_beyond.py [--model-name EVA02-B-16] [--runs 2]
        [--cases paper ml3 two-teachers-loss two-teachers-target]

Same step as ``tools/benchmark.py train_step`` (student at 560, DINOv2-B/14 at 490, 20 crops, AdamW,
batch 1); each case in its own subprocess (peak RSS is its own). The second teacher is DINO-B/16 at
560 (35 x 35 tokens, like SAM-B; no extra package needed).
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

CASES = {
    'paper': dict(),
    'ml3': dict(student=dict(decouple_last=3), context_block_weights=(0.5, 0.5, 1.0)),
    'two-teachers-loss': dict(second=True, vfm_combine='loss'),
    'two-teachers-target': dict(second=True, vfm_combine='target'),
}


def run_case(name: str, model_name: str, runs: int) -> dict:
    import declip_mm  # noqa: F401
    from declip_mm.models import DeCLIPDistiller
    opt = dict(CASES[name])
    second = opt.pop('second', False)
    student = dict(type='DeCLIPVisionTransformer', model_name=model_name, attn_mode='csa',
                   attn_scale=1.0, **opt.pop('student', {}))
    vfm = [dict(type='VFMTeacher', arch='dinov2_vitb14_reg')]
    if second:
        vfm.append(dict(type='VFMTeacher', arch='dino_vitb16'))
    model = DeCLIPDistiller(student=student, vfm_teacher=vfm if second else vfm[0], **opt).train()
    side, k = 560, 20
    cells = torch.tensor([[j * 7.0, i * 8.75, (j + 1) * 7.0, (i + 1) * 8.75]
                          for i in range(4) for j in range(5)])
    inputs = dict(student=torch.randn(1, 3, side, side), vfm=torch.randn(1, 3, 490, 490),
                  vfm_1=torch.randn(1, 3, 560, 560), crops=torch.randn(k, 3, 224, 224),
                  rois=torch.cat([torch.zeros(k, 1), cells], 1))
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.1)

    def step():
        optim.zero_grad(set_to_none=True)
        sum(model.loss(inputs).values()).backward()
        optim.step()

    step()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return dict(case=name, model=model_name, median_s=statistics.median(times), runs_s=times,
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                threads=torch.get_num_threads())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model-name', default='EVA02-B-16')
    p.add_argument('--runs', type=int, default=2)
    p.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    p.add_argument('--_child', default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        print(json.dumps(run_case(args._child, args.model_name, args.runs)))
        return
    rows = []
    for name in args.cases:
        out = subprocess.run([sys.executable, __file__, '--model-name', args.model_name, '--runs',
                              str(args.runs), '--_child', name], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr[-2000:])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print('| case | median step (s) | peak RSS (MiB) |\n|---|---|---|')
    for r in rows:
        print(f"| {r['case']} | {r['median_s']:.2f} | {r['peak_rss_mib']:.0f} |")
    print(json.dumps(rows))


if __name__ == '__main__':
    main()
