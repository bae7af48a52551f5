"""tools/make_tiny_towers.py (issue 24.8): every tool runs on the written tiny towers with the commands
the tool prints, and the README's section lists exactly those commands.

The printed commands are run in-process (``python tools/X.py ARGS`` -> ``tools/X.py``'s ``main(ARGS)``,
``python -c CODE`` -> ``exec(CODE)``); the web demo is started on a free port and sent one request.
"""
import base64
import http.client
import io
import json
import os.path as osp
import re
import shlex
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from seg_metric_helpers import check_tool_metrics
from tf_helpers import ROOT, load_tool

make = load_tool('make_tiny_towers')
SECTION = '## Try every tool without weights (random tiny towers)'


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


def readme_commands():
    text = open(osp.join(ROOT, 'README.md'), encoding='utf-8').read()
    assert SECTION in text
    body = text.split(SECTION, 1)[1].split('\n## ', 1)[0]
    blocks = re.findall(r'```bash\n(.*?)```', body, flags=re.S)
    return [line for b in blocks for line in b.splitlines() if line.startswith('python')]


def test_readme_lists_the_printed_commands(capsys, tmp_path):
    """The README shows the commands the tool prints for the default --out (no drift)."""
    printed = [cmd for _, cmd in make.commands(make.DEFAULT_OUT)]
    assert readme_commands() == [f'python tools/make_tiny_towers.py --out {make.DEFAULT_OUT}',
                                 *printed]


def _argv(cmd, tool):
    args = shlex.split(cmd)
    assert args[:2] == ['python', f'tools/{tool}.py'], cmd
    return args[2:]


def _state_dict_of(pt, prefix):
    sd = torch.load(pt, map_location='cpu', weights_only=True)
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _assert_same_tensors(module_sd, ref):
    assert set(ref) <= set(module_sd), sorted(set(ref) - set(module_sd))[:5]
    for k, v in ref.items():
        assert torch.equal(module_sd[k].cpu(), v), k


def _post_segment(port, png, classes):
    body = json.dumps(dict(image='data:image/png;base64,' + base64.b64encode(png).decode(),
                           classes=classes, mode='quick')).encode()
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
    try:
        conn.request('POST', '/segment', body=body, headers={'Content-Type': 'application/json'})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_every_printed_command_runs(tmp_path, capsys):
    out = str(tmp_path / 'tiny')
    make.main(['--out', out])
    printed = capsys.readouterr().out
    cmds = dict(make.commands(out))
    for title, cmd in cmds.items():
        assert f'# {title}\n{cmd}\n' in printed
    assert 'RANDOM weights' in printed
    titles = list(cmds)
    tower_pt = osp.join(out, 'tiny_eva02.pt')

    # -- inferencer: the printed python -c line; the tower is the written file, loaded as a release
    code = shlex.split(cmds[titles[0]])[2]
    scope = {}
    exec(code, scope)
    res = scope['res']
    assert res.classes[1] == ['grass', 'lawn'] and res.labels.shape == (60, 90)
    from declip_mm.apis import DeCLIPInferencer
    tf_cfg = osp.join(out, 'configs', 'tiny_training-free_ade20k.py')
    inf = DeCLIPInferencer(tf_cfg)
    model = inf.model
    _assert_same_tensors(model.backbone.visual.state_dict(), _state_dict_of(tower_pt, 'visual.'))
    _assert_same_tensors(model.text_encoder.text.state_dict(), _state_dict_of(tower_pt, 'text.'))

    # -- tools/demo.py: its labels and overlay PNG are the inferencer's for the same photo
    demo_args = _argv(cmds[titles[1]], 'demo')
    labels = load_tool('demo').main(demo_args)
    np.testing.assert_array_equal(labels, res.labels)
    overlay_png = demo_args[demo_args.index('--out') + 1]
    np.testing.assert_array_equal(np.asarray(Image.open(overlay_png).convert('RGB')),
                                  np.asarray(res.visualization().convert('RGB')))

    # -- tools/web_demo.py: the page's overlay is the inferencer's (whole mode)
    web = load_tool('web_demo')
    srv, app = web.make_server(web.parse_args(_argv(cmds[titles[2]], 'web_demo') + ['--port', '0']))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        photo = Image.open(osp.join(out, 'data', 'demo.jpg')).convert('RGB')
        buf = io.BytesIO()
        photo.save(buf, format='PNG')
        status, page = _post_segment(srv.server_address[1], buf.getvalue(), make.DEMO_CLASSES)
    finally:
        srv.shutdown()
        srv.server_close()
    assert status == 200, page
    page_overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(page['overlay'].split(',')[1]))))
    whole = inf(photo, classes=make.DEMO_CLASSES, mode='whole')
    np.testing.assert_array_equal(page_overlay[..., :3], whole.overlay)

    test_tool, train_tool = load_tool('test'), load_tool('train')
    from declip_mm.testing import BENCHMARK_LAYOUTS
    ade_root = osp.join(out, 'data', BENCHMARK_LAYOUTS['ade20k']['data_root'])

    # -- tools/test.py training-free: the printed mIoU is that of its own predictions
    metrics = test_tool.main(_argv(cmds[titles[3]], 'test') + ['--out', str(tmp_path / 'tf_pred')])
    check_tool_metrics(metrics, tmp_path / 'tf_pred', ade_root, 'ade20k')

    # -- DeCLIP distillation: the student and the VFM teacher start from the written files
    runner = train_tool.main(_argv(cmds[titles[4]], 'train'))
    from declip_mm.apis import unwrap_model
    distiller = unwrap_model(runner.model)
    _assert_same_tensors(distiller.vfm_teacher.model.state_dict(),
                         _state_dict_of(osp.join(out, 'tiny_dinov2.pt'), ''))
    assert osp.isfile(osp.join(out, 'work', 'declip', 'declip_epoch_1.pth'))

    # -- CAT-Seg: 3 training iterations, then the trained head evaluates; without it: refused
    runner = train_tool.main(_argv(cmds[titles[5]], 'train'))
    assert runner.iter == 3
    catseg_test = _argv(cmds[titles[6]], 'test')
    with pytest.raises(Exception, match='allow-untrained-head|allow_untrained_head'):
        test_tool.main([catseg_test[0]] + catseg_test[2:])
    metrics = test_tool.main(catseg_test + ['--out', str(tmp_path / 'cs_pred')])
    check_tool_metrics(metrics, tmp_path / 'cs_pred', ade_root, 'ade20k')

    # -- region classification: all twelve accuracies, each a share of the fixture's regions
    metrics = test_tool.main(_argv(cmds[titles[7]], 'test'))
    keys = {f'region_cls/{f}.{s}.macc{k}' for f in ('rois', 'maskpool', 'crops')
            for s in ('thing', 'stuff') for k in (1, 5)}
    assert keys <= set(metrics)
    for f in ('rois', 'maskpool', 'crops'):
        for s in ('thing', 'stuff'):
            top1, top5 = (float(metrics[f'region_cls/{f}.{s}.macc{k}']) for k in (1, 5))
            assert 0.0 <= top1 <= top5 <= 100.0, (f, s, top1, top5)  # top-5 contains top-1

    # -- detection: one epoch (the tower frozen, as released), then the trained heads evaluate
    runner = train_tool.main(_argv(cmds[titles[8]], 'train'))
    det_args = _argv(cmds[titles[9]], 'test')
    ckpt = torch.load(det_args[1], map_location='cpu', weights_only=False)['state_dict']
    _assert_same_tensors({k[len('backbone.'):]: v for k, v in ckpt.items()
                          if k.startswith('backbone.')},
                         {'visual.' + k: v for k, v in
                          _state_dict_of(osp.join(out, 'tiny_eva02_det.pt'), 'visual.').items()})
    metrics = test_tool.main(det_args)
    assert {'coco/base_ap50', 'coco/novel_ap50'} <= set(metrics)


def test_out_folder_of_other_files_is_refused(tmp_path):
    """The tool writes only into a new or empty folder, or into one it wrote before."""
    (tmp_path / 'notes.txt').write_text('mine')
    with pytest.raises(SystemExit, match='not empty and was not written by this tool'):
        make.prepare_out(str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ['notes.txt']
    fresh = tmp_path / 'fresh'
    make.prepare_out(str(fresh))
    make.prepare_out(str(fresh))   # a rerun into its own output is fine
    assert (fresh / make.MARKER).is_file()
