"""model-index.yml and the per-family metafiles (OpenMMLab's format) against the configs and docs."""
import glob
import os.path as osp

import pytest
import yaml

from declip_mm.tools_support.catseg_suite import CATSEG_PUBLISHED

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load(path):
    with open(osp.join(ROOT, path)) as f:
        return yaml.safe_load(f)


def metafiles():
    return load('model-index.yml')['Import']


def models():
    return [(mf, m) for mf in metafiles() for m in load(mf)['Models']]


def test_every_metafile_is_indexed_and_exists():
    listed = set(metafiles())
    on_disk = {osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs', '*', 'metafile.yml'))}
    assert listed == on_disk


def test_every_model_names_an_existing_config_of_its_family():
    names = set()
    for mf, m in models():
        assert osp.isfile(osp.join(ROOT, m['Config'])), m['Config']
        assert osp.dirname(m['Config']) == osp.dirname(mf)  # a family's metafile lists its own configs
        assert m['Name'] == osp.splitext(osp.basename(m['Config']))[0]
        assert m['Name'] not in names
        names.add(m['Name'])
        collections = {c['Name'] for c in load(mf)['Collections']}
        assert m['In Collection'] in collections
        assert m['Metadata']['Release checkpoint']


def test_results_carry_an_empty_reproduced_column_per_metric():
    n = 0
    for _, m in models():
        for r in m['Results']:
            assert set(r['Reproduced here']) == set(r['Metrics'])
            assert all(v is None for v in r['Reproduced here'].values())  # not measured on real weights
            assert r['Source']
            n += 1
    assert n >= 14


@pytest.mark.parametrize('variant,row', [('declip-eva02-b16', 'DeCLIP + CAT-Seg ViT-B (published)'),
                                         ('openai-vitb16', 'CAT-Seg ViT-B (published)')])
def test_catseg_numbers_agree_with_the_eval_driver(variant, row):
    by_name = {m['Name']: m for _, m in models()}
    for bench, miou in CATSEG_PUBLISHED[row].items():
        (res, ) = by_name[f'catseg_{variant}_{bench}-640x640']['Results']
        assert res['Metrics']['mIoU'] == miou


def test_training_free_numbers_are_the_ones_in_docs():
    """Each published mIoU of configs/training_free/metafile.yml appears in docs/method.md's
    'Published numbers' row under the same benchmark name."""
    doc = open(osp.join(ROOT, 'docs', 'method.md')).read()
    (line, ) = [ln for ln in doc.splitlines() if ln.startswith('| training-free mIoU, paper')]
    words = {'context60': 'Context60', 'coco_object': 'COCO-Object', 'context59': 'Context59',
             'coco_stuff164k': 'COCO-Stuff', 'cityscapes': 'Cityscapes', 'ade20k': 'ADE20K'}
    seen = 0
    for m in load('configs/training_free/metafile.yml')['Models']:
        key = m['Name'].split('_training-free_')[1].rsplit('-', 1)[0]
        miou = m['Results'][0]['Metrics']['mIoU']
        if key in words:
            assert f'{words[key]} {miou}' in line, key
            seen += 1
        else:
            assert miou is None  # VOC20 / VOC21: not quoted in the docs
    assert seen == 6
