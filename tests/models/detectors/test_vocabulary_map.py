"""Issue 24.5: a detector's test-time vocabulary is scored against the dataset's categories by name.

Before: with ``--cfg-options model.roi_head.bbox_head.classes=[zebra,...]`` label 0 ("zebra") was
evaluated as the dataset's category 0 ("person") and an AP printed."""
import pytest
import torch
from fvit_helpers import write_tiny_fvit_config
from mmengine.config import Config
from mmengine.registry import init_default_scope
from tf_helpers import load_tool

from declip_mm.datasets.ov_coco_classes import OV_COCO_CLASSES
from declip_mm.testing import write_ov_coco_fixture


def reference_map(vocab, dataset):
    """Written from the rule: entry k -> the index of the dataset category it names, else -1."""
    out = []
    for entry in vocab:
        names = {n.strip().lower() for n in ([entry] if isinstance(entry, str) else entry)}
        hits = [j for j, c in enumerate(dataset) if c.lower() in names]
        out.append(hits[0] if hits else -1)
    return out


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_map_equals_reference_on_random_vocabularies(seed):
    from declip_mm.models.detectors.vocabulary_map import vocabulary_label_map
    g = torch.Generator().manual_seed(seed)
    dataset = list(OV_COCO_CLASSES[:20])
    perm = torch.randperm(20, generator=g).tolist()
    vocab = [dataset[i] if i % 3 else [dataset[i].upper(), f'{dataset[i]} synonym'] for i in perm]
    vocab[1:1] = ['traffic cone', ['hydrant', 'fire hydrant']]    # names no dataset category
    got = vocabulary_label_map(vocab, dataset)
    assert got == reference_map(vocab, dataset)
    assert sorted(j for j in got if j >= 0) == list(range(20)) and got.count(-1) == 2


def test_identical_lists_need_no_map_and_bad_vocabularies_are_refused():
    from declip_mm.models.detectors.vocabulary_map import vocabulary_label_map
    assert vocabulary_label_map(['cat', ['dog', 'puppy']], ['cat', 'dog']) is None
    with pytest.raises(ValueError, match=r"(?s)2 dataset categories are not in the vocabulary: "
                       r"person, car.*extra names are allowed"):
        vocabulary_label_map(['zebra', 'cat'], ['person', 'cat', 'car'])
    with pytest.raises(ValueError, match=r"named by several vocabulary entries: 'dog' \(entries "
                       r"\[0, 1\]\)"):
        vocabulary_label_map([['dog', 'puppy'], 'dog'], ['dog'])
    with pytest.raises(ValueError, match='names two dataset categories'):
        vocabulary_label_map([['cup', 'mug']], ['cup', 'mug'])


@pytest.fixture
def detector(tmp_path):
    from mmdet.registry import MODELS
    path = write_tiny_fvit_config(str(tmp_path / 'tiny_fvit.py'), str(tmp_path / 'coco'),
                                  str(tmp_path / 'work'))
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(path).model)
    model.init_weights()
    return model.eval()


def _predict(model, seed=0, size=64):
    from mmdet.structures import DetDataSample
    torch.manual_seed(seed)
    s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                    scale_factor=(1.0, 1.0), img_id=0))
    data = dict(inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8)],
                data_samples=[s])
    with torch.no_grad():
        return model.test_step(data)[0].pred_instances


def test_predictions_become_dataset_indices_and_other_names_are_dropped(detector):
    dataset = ['cat', 'dog', 'person']
    vocab = ['zebra', ['dog', 'puppy'], 'person', 'cat', 'kite']
    detector.set_vocabulary(vocab)
    raw = _predict(detector)
    assert len(raw) > 0 and {0, 4} & set(raw.labels.tolist()), 'no distractor box to drop'
    assert detector.set_dataset_classes(dataset) == [-1, 1, 2, 0, -1]
    mapped = _predict(detector)
    ref = torch.tensor(reference_map(vocab, dataset))[raw.labels]
    keep = ref >= 0
    torch.testing.assert_close(mapped.bboxes, raw.bboxes[keep])
    torch.testing.assert_close(mapped.scores, raw.scores[keep])
    assert mapped.labels.tolist() == ref[keep].tolist()
    assert mapped.label_names == [dataset[j] for j in mapped.labels.tolist()]
    # a later vocabulary keeps being scored by name; one that cannot be is refused
    detector.set_vocabulary(['person', 'cat', 'dog'])
    assert detector.dataset_label_map.tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="not in the vocabulary: dog, person"):
        detector.set_vocabulary(['cat', 'zebra'])
    detector.set_dataset_classes(None)
    assert detector.dataset_label_map is None


def test_test_tool_maps_or_refuses_a_changed_vocabulary(tmp_path, monkeypatch):
    from mmdet.registry import MODELS
    root = write_ov_coco_fixture(str(tmp_path / 'coco'), num_train=1, num_val=1)
    cfg_path = write_tiny_fvit_config(str(tmp_path / 'tiny_fvit.py'), root, str(tmp_path / 'work'))
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(cfg_path).model)
    ckpt = tmp_path / 'fvit.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    test_tool = load_tool('test')
    base = [cfg_path, str(ckpt), '--work-dir', str(tmp_path / 'test'), '--cfg-options']
    with pytest.raises(ValueError, match=r"(?s)DeCLIPFViT \(3 classes: zebra, cat, dog\) cannot be "
                       r"scored.*62 dataset categories are not in the vocabulary: person, bicycle"):
        test_tool.main(base + ['model.roi_head.bbox_head.classes=[zebra,cat,dog]'])
    # every category, in another order, plus a name that is no category: what the metric is given
    # must be the dataset's category of each box's name
    from mmdet.evaluation.metrics import CocoMetric
    seen = []
    orig = CocoMetric.process

    def record(self, data_batch, data_samples):
        seen.extend(s['pred_instances'] for s in data_samples)
        return orig(self, data_batch, data_samples)

    monkeypatch.setattr(CocoMetric, 'process', record)
    vocab = list(reversed(OV_COCO_CLASSES)) + ['hydrant']
    metrics = test_tool.main(base + [f'model.roi_head.bbox_head.classes=[{",".join(vocab)}]'])
    assert 0.0 <= metrics['coco/bbox_mAP_50'] <= 1.0
    assert seen and sum(len(p['labels']) for p in seen) > 0
    for pred in seen:
        names = [OV_COCO_CLASSES[j] for j in pred['labels'].tolist()]
        assert names == pred['label_names'] and 'hydrant' not in names
