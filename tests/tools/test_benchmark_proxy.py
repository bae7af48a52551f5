"""tools/benchmark.py proxy: interleaved vanilla / proxy runs in their own processes, ratios against
the first mode (docs/method.md §7)."""
import json
import statistics

from tf_helpers import load_tool

benchmark = load_tool('benchmark')


def test_proxy_cost_table(tmp_path, capsys):
    out = tmp_path / 'proxy.json'
    summary = benchmark.main(['proxy', '--tiny', '--vfm-arch', 'dino_vitb8', '--size', '40', '56',
                              '--crop', '32', '--stride', '24', '--rounds', '1', '--runs', '1',
                              '--warmup', '0', '--threads', '1', '--json', str(out)])
    runs = json.load(open(out))['runs']
    assert [s['mode'] for s in summary] == ['vanilla', 'proxy']
    assert [len(runs[m]) for m in ('vanilla', 'proxy')] == [1, 1]   # one process per mode per round
    base = statistics.median(r['median_s'] for r in runs['vanilla'])
    for s in summary:
        t = statistics.median(r['median_s'] for r in runs[s['mode']])
        assert s['median_s'] == t and abs(s['time_ratio'] - t / base) < 1e-12
    from declip_mm.models.segmentors.zero_shot_segmentor import window_grid
    assert runs['proxy'][0]['windows'] == len(window_grid(40, 56, (32, 32), (24, 24)))
    assert 'dino_vitb8' in summary[1]['model']
    assert '| proxy |' in capsys.readouterr().out
