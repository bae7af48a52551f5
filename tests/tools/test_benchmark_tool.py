"""tools/benchmark.py side by side runs end to end (tiny towers, one round): interleaved processes,
the table, the JSON report, and the agreement of the default mode with the reference mode."""
import json

from tf_helpers import load_tool

from declip_mm.testing import tiny_clip_config


def test_infer_side_by_side_report(tmp_path, capsys):
    cfg = tmp_path / 'tiny.json'
    cfg.write_text(json.dumps(tiny_clip_config('eva02')))
    out = tmp_path / 'bench.json'
    bench = load_tool('benchmark')
    (report, ) = bench.main(['infer', '--model-name', str(cfg), '--size', '48', '80', '--ori', '61',
                             '99', '--num-classes', '5', '--rounds', '1', '--runs', '1',
                             '--threads', '1', '--json', str(out)])
    text = capsys.readouterr().out
    assert '| infer | default |' in text and '| infer | reference |' in text
    assert json.loads(out.read_text())['summary'].keys() == {'default', 'reference'}
    assert report['agreement'] == {'default': {'labels_equal': 1.0}}
    s = report['summary']
    # the same work, except that the default mode resizes the window logits with two matrix products
    # (window_accumulate), which the FLOP counter sees, where the reference's F.interpolate is not
    # counted: one window here (the 48 x 80 image is smaller than the 336 crop), 6 x 10 tokens
    n, h, w, fh, fw = 5, 48, 80, 48 // 8, 80 // 8
    resize = 2 * n * h * fh * fw + 2 * n * h * fw * w
    assert s['default']['flops'] == s['reference']['flops'] + resize > resize
    assert [r['mode'] for r in report['runs']] == ['default', 'reference']
    assert all(r['tensor_peak_mib'] > 0 and r['peak_mib'] > 0 for r in report['runs'])
