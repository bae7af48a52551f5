import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image
from tf_helpers import load_tool, run_file, tiny_options, write_all_fixtures

eval_all = load_tool('eval_all')
demo = load_tool('demo')
coco_object = load_tool('dataset_converters/coco_object')


def test_eval_all_eight_benchmarks(tmp_path, capsys):
    data = write_all_fixtures(tmp_path / 'data', num_images=1)
    out = tmp_path / 'eval'
    results = eval_all.main(['--data-root', data, '--work-dir', str(out), '--cfg-options',
                             *tiny_options(tmp_path, 'openai')])
    assert list(results) == eval_all.BENCHMARKS
    text = capsys.readouterr().out
    assert '[8/8] ade20k' in text
    assert '| VOC21 | Context60 | Object | VOC20 | Context59 | Stuff | City | ADE | Avg |' in text
    saved = json.load(open(run_file(out, 'json')))
    assert saved['mIoU'] == pytest.approx(results)
    rows = open(run_file(out, 'csv')).read().splitlines()
    assert rows[0].split(',')[-1] == 'Avg' and len(rows[1].split(',')) == 9
    avg = float(rows[1].split(',')[-1])
    assert avg == pytest.approx(sum(results.values()) / 8, abs=0.01)


def test_format_table():
    t = eval_all.format_table({'voc21': 50.0, 'ade20k': 20.0})
    assert t.splitlines()[0] == '| VOC21 | ADE | Avg |'
    assert t.splitlines()[2] == '| 50.0 | 20.0 | 35.0 |'


def test_demo_writes_overlay(tmp_path):
    from declip_mm.testing import write_benchmark_fixture
    root = write_benchmark_fixture('ade20k', str(tmp_path / 'data'), num_images=1, sizes=[(60, 80)])
    img = osp.join(root, 'images', 'validation', 'ADE_val_00000001.jpg')
    out = tmp_path / 'overlay.png'
    opts = [o for o in tiny_options(tmp_path) if not o.startswith('test_dataloader')]
    pred = demo.main([img, '--classes', 'cat; grass, lawn; sky', '--out', str(out),
                      '--cfg-options', *opts])
    assert pred.shape == (60, 80) and set(np.unique(pred)) <= {0, 1, 2}
    overlay = Image.open(out)
    assert overlay.height >= 60 and overlay.width > 80  # image + legend
    assert demo.parse_classes('a; b, c ;') == [['a'], ['b', 'c']]
    with pytest.raises(SystemExit):
        demo.main([str(tmp_path / 'missing.jpg'), '--classes', 'a'])


def test_coco_object_converter(tmp_path):
    ann = tmp_path / 'coco_stuff164k' / 'annotations' / 'val2017'
    ann.mkdir(parents=True)
    lab = np.array([[0, 79, 80], [170, 255, 5]], dtype=np.uint8)
    Image.fromarray(lab).save(ann / '000000000139_labelTrainIds.png')
    coco_object.main([str(tmp_path / 'coco_stuff164k'), '--nproc', '1'])
    out = np.asarray(Image.open(ann / '000000000139_instanceTrainIds.png'))
    assert out.tolist() == [[1, 80, 0], [0, 0, 6]]
    with pytest.raises(SystemExit, match='no \\*_labelTrainIds.png'):
        coco_object.main([str(tmp_path / 'nothing')])
