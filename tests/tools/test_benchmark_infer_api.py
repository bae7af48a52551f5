"""tools/benchmark.py infer_api: the inferencer's peak RSS case (issue 24, item 4), run in-process on a
tiny tower (the tool runs it in a subprocess of its own)."""
import json

import pytest
import torch
from tf_helpers import load_tool

from declip_mm.testing import tiny_clip_config


def test_infer_api_case(tmp_path):
    cfg = tmp_path / 'tiny.json'
    cfg.write_text(json.dumps(tiny_clip_config('eva02')))
    bench = load_tool('benchmark')
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = bench.parse_args(['infer_api', '--model-name', str(cfg), '--size', '50', '70',
                                 '--num-classes', '4', '--runs', '1', '--whole', '--device', 'cpu'])
        for mode in ('lazy', 'dense'):
            res = bench.case_infer_api(args, mode)
            assert res['case'] == f'inferencer (whole), 4 classes, {mode}'
            assert res['size'] == [50, 70] and len(res['runs_s']) == 1
    finally:
        torch.set_num_threads(n)
    with pytest.raises(SystemExit, match='lazy and / or dense'):
        bench.main(['infer_api', '--model-name', str(cfg), '--modes', 'fast'])
