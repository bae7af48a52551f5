import json
import math

import pytest
import torch
from region_cls_helpers import (
    CONSTRUCTED_EXPECTED,
    EXPECTED,
    constructed_results,
    ddp_metric_worker,
    pipeline,
    run_classifier,
    stub_classifier,
    write_fixture,
)

from declip_mm.evaluation import RegionClassificationMetric, mean_class_accuracy
from declip_mm.registry import DATASETS, METRICS


def _evaluate(results, size=None):
    metric = METRICS.build(dict(type='RegionClassificationMetric'))
    metric.process(None, results)
    res = metric.evaluate(size or len(results))
    return {k.split('/', 1)[1]: v for k, v in res.items()}


def _dataset(root, **load_kw):
    pipe = pipeline()
    pipe[0].update(load_kw)
    return DATASETS.build(dict(type='COCOPanopticRegionDataset', data_root=root, pipeline=pipe))


def test_fixture_with_known_features_gives_hand_computed_accuracies(tmp_path):
    """Stub tower + identity class embeddings on the hand-made fixture: every number is known
    (dog never appears, things and stuff apart, the 8^2 filter, the 1.5x thing crops)."""
    res = run_classifier(stub_classifier(), _dataset(write_fixture(tmp_path)))
    assert set(res) == set(EXPECTED)
    for k, v in EXPECTED.items():
        assert res[k] == pytest.approx(v, abs=1e-9), k


def test_the_protocol_rules_change_the_answer(tmp_path):
    root = write_fixture(tmp_path)
    model = stub_classifier()
    # tight thing crops: the objects fill their crops, so the crop feature is right
    tight = run_classifier(model, _dataset(root, thing_crop_scale=1.0))
    assert tight['crops.thing.macc1'] == pytest.approx(100.0)
    # no size filter: the 8x8 floor-wood (stuff box 7x7) is classified (right): stuff 2/3
    unfiltered = run_classifier(model, _dataset(root, min_size=0))
    assert unfiltered['rois.stuff.macc1'] == pytest.approx(100 * 2 / 3)


def test_metric_on_constructed_predictions():
    res = _evaluate(constructed_results())
    assert set(res) == set(CONSTRUCTED_EXPECTED)
    for k, v in CONSTRUCTED_EXPECTED.items():
        assert res[k] == pytest.approx(v, abs=1e-12), k
    # a class that never appears is left out of the mean, not counted as 0
    labels = torch.tensor([0, 0, 2]).numpy()
    assert mean_class_accuracy(torch.tensor([1, 0, 1]).bool().numpy(), labels) == 0.75


def test_duplicate_images_are_counted_once():
    results = constructed_results()
    again = _evaluate(results + [results[1], results[0]], size=len(results) + 2)
    assert again == pytest.approx(_evaluate(results))


def test_missing_split_is_nan_and_bad_input_raises():
    only_things = [dict(r, is_thing=torch.ones_like(r['is_thing'])) for r in constructed_results()]
    res = _evaluate(only_things)
    assert math.isnan(res['rois.stuff.macc1']) and not math.isnan(res['rois.thing.macc1'])
    with pytest.raises(ValueError, match='no region predictions'):
        _evaluate([{k: v for k, v in r.items() if k != 'pred_rois'} for r in constructed_results()])
    with pytest.raises(ValueError, match='top-5 asked'):
        _evaluate([dict(r, pred_rois=r['pred_rois'][:, :3]) for r in constructed_results()])
    with pytest.raises(ValueError, match='positive'):
        RegionClassificationMetric(topk=(0, ))


def test_two_processes_all_gather_without_the_samplers_duplicates(tmp_path):
    """Two gloo processes, 3 images: the sampler pads rank 1 with image 0 again; the gathered
    metric equals the one-process metric."""
    import torch.multiprocessing as mp
    out = tmp_path / 'res.json'
    # fork: the children inherit the imported modules (spawn would re-import mmseg for ~20 s)
    mp.start_processes(ddp_metric_worker, args=(2, str(tmp_path / 'init'), str(out)), nprocs=2,
                       join=True, start_method='fork')
    got = json.loads(out.read_text())
    assert got.pop('indices') == [0, 2]
    got = {k.split('/', 1)[1]: v for k, v in got.items()}
    assert got == pytest.approx(CONSTRUCTED_EXPECTED)
