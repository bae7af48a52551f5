"""tools/analysis/proxy_tokens.py on tiny towers: pictures, the printed table, consistent numbers."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from tf_helpers import load_tool

from declip_mm.analysis import attention_trace, proxy_scores
from declip_mm.models import DeCLIPVisionTransformer
from declip_mm.testing import tiny_clip_config

proxy_tokens = load_tool('analysis/proxy_tokens')

pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py



def test_proxy_tokens_tool(tmp_path, capsys):
    cfg = tiny_clip_config('eva02')
    js = tmp_path / 'tiny.json'
    js.write_text(json.dumps(cfg))
    torch.manual_seed(0)
    tower = DeCLIPVisionTransformer(model_name=cfg)
    ckpt = tmp_path / 'tower.pth'
    torch.save({'state_dict': {f'visual.{k}': v for k, v in tower.visual.state_dict().items()},
                'meta': {}}, ckpt)
    torch.manual_seed(1)  # the compared tower: other weights
    other = DeCLIPVisionTransformer(model_name=cfg)
    ckpt_b = tmp_path / 'other.pth'
    torch.save({'state_dict': {f'visual.{k}': v for k, v in other.visual.state_dict().items()},
                'meta': {}}, ckpt_b)
    rng = np.random.default_rng(0)
    img = tmp_path / 'img.png'
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(img)
    out = tmp_path / 'pt.png'
    res = proxy_tokens.main([str(img), '--model-name', str(js), '--checkpoint', str(ckpt),
                             '--compare', str(ckpt_b), '--size', '32', '--points', '0.5,0.5', '0,1',
                             '--topk', '2', '--vfm-overrides',
                             json.dumps(dict(embed_dim=64, depth=2, num_heads=2, img_size=56)),
                             '--out', str(out)])
    text = capsys.readouterr().out
    # 32 x 43 -> resized to 32 x 40 (patch 8): a 4 x 5 grid; token (0, 1) -> the top-right corner
    assert res['points'] == [(2, 2), (0, 4)]
    assert '| block | original: top-2 mass' in text and 'DeCLIP: keys 50%' in text
    assert '| 2 csa |' in text and text.count('\n| ') >= 1 + 4
    assert Image.open(out).format == 'PNG' and (tmp_path / 'pt_context.png').is_file()
    # the printed numbers are the scores of each tower's image-token queries: --checkpoint's for
    # 'original', --compare's for 'DeCLIP', block by block
    orig, dec = res['results']['original'], res['results']['DeCLIP']
    x = proxy_tokens.to_tensor(proxy_tokens.load_image(str(img), 32, 8), proxy_tokens.CLIP_MEAN,
                               proxy_tokens.CLIP_STD)
    for result, model in ((orig, tower), (dec, other)):
        trace = attention_trace(model.eval(), x)
        for i, a in enumerate(trace.attn):
            want = proxy_scores(a.mean(1)[0, 1:].double(), k=2)
            assert result['scores'][i][1] == pytest.approx(want), i
    assert orig['scores'][0][1] != pytest.approx(dec['scores'][0][1])  # two towers told apart
    tr = attention_trace(tower.eval(), x)
    # attention map of a chosen token = its head-averaged row over the patch keys
    row = tr.attn[0].mean(1)[0, 1 + 2 * 5 + 2, 1:].view(4, 5).numpy()
    np.testing.assert_allclose(orig['rows'][0][1][1], row, rtol=1e-6)
    # context correlation: 1 at the chosen token itself, for the towers (Q, K) and the VFM
    names = [n for n, _ in res['context']]
    assert names[:2] == ['original Q', 'original K'] and names[-1].startswith('VFM')
    for _, maps in res['context']:
        assert maps[0][2, 2] == pytest.approx(1.0) and maps[1][0, 4] == pytest.approx(1.0)
        assert maps[0].shape == (4, 5) and (np.abs(maps[0]) <= 1 + 1e-9).all()
    with pytest.raises(SystemExit, match='relative y,x'):
        proxy_tokens.main([str(img), '--model-name', str(js), '--points', 'middle', '--no-vfm',
                           '--size', '32', '--out', str(out)])


def test_proxy_tokens_without_matplotlib(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # import matplotlib -> ImportError
    js = tmp_path / 'tiny.json'
    js.write_text(json.dumps(tiny_clip_config('openai')))
    img = tmp_path / 'img.png'
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(img)
    out = tmp_path / 'pil.png'
    res = proxy_tokens.main([str(img), '--model-name', str(js), '--size', '32', '--no-vfm',
                             '--out', str(out)])
    n_rows = len(res['results']['original']['rows'])  # 3 blocks + the decoupled last block
    assert n_rows == 4 and Image.open(out).size == (110 + 96 * 4, 20 + 96 * n_rows)
    assert Image.open(tmp_path / 'pil_context.png').size[1] == 20 + 96 * 2  # Q and K rows
