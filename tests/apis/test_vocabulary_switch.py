"""Switching between vocabularies of the same length (issue 21, item 9): cached text embeddings and
name-to-class maps are keyed by the class list itself, in the inferencer, the segmentors and the text
encoder. Each result must equal a model built with that vocabulary from the start."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from catseg_helpers import tiny_segmentor_cfg

from declip_mm.apis import DeCLIPInferencer
from declip_mm.models import DeCLIPTextEncoder, DeCLIPZeroShotSegmentor
from declip_mm.registry import MODELS
from declip_mm.testing import tiny_clip_config

A = [['sky'], ['grass'], ['road']]
B = [['water'], ['tree'], ['car']]              # same length, other names
A_REV = [['road'], ['grass'], ['sky']]          # same names, other order
G1 = [['sky', 'grass'], ['road']]               # same flattened names, other grouping
G2 = [['sky'], ['grass', 'road']]


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


def tiny_opts():
    tiny = dict(tiny_clip_config('eva02'), _delete_=True)
    return {'model.backbone.model_name': tiny, 'model.text_encoder.model_name': tiny,
            'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None,
            'model.text_encoder.templates': 'single', 'test_pipeline.1.scale': (4096, 48)}


def photo(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((40, 56, 3)) * 255).astype(np.uint8)


def test_inferencer_same_length_switches():
    torch.manual_seed(0)
    inf = DeCLIPInferencer(cfg_options=tiny_opts())
    state = inf.model.state_dict()
    img = photo()

    def fresh(vocab):  # a model built with this vocabulary, the same weights
        ref = DeCLIPInferencer(cfg_options=tiny_opts(), classes=vocab)
        ref.model.load_state_dict(state)
        return ref(img, mode='whole').probs

    refs = {}
    for name, vocab in [('A', A), ('B', B), ('A', A), ('A_REV', A_REV), ('G1', G1), ('G2', G2),
                        ('G1', G1), ('B', B)]:
        got = inf(img, classes=vocab, mode='whole').probs
        if name not in refs:
            refs[name] = fresh(vocab)
        np.testing.assert_allclose(got, refs[name], rtol=0, atol=1e-6, err_msg=name)
    # and the vocabularies really differ
    assert np.abs(refs['A'] - refs['B']).max() > 1e-3
    np.testing.assert_allclose(refs['A_REV'], refs['A'][::-1], rtol=0, atol=1e-6)
    assert np.abs(refs['G1'] - refs['G2']).max() > 1e-3


def zero_shot(names):
    torch.manual_seed(0)
    cfg = tiny_clip_config('eva02')
    return DeCLIPZeroShotSegmentor(
        backbone=dict(type='DeCLIPVisionTransformer', model_name=cfg, attn_mode='csa'),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=cfg, templates='single'),
        class_names=names, test_cfg=dict(mode='whole')).eval()


@pytest.mark.parametrize('switch', ['assign', 'set_class_names'])
def test_zero_shot_segmentor_keys_embeddings_by_the_list(switch):
    seg = zero_shot(A)
    ref = zero_shot(A)  # the same weights; its text cache only ever sees one list at a time
    img = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        seg.class_embeddings()
        for vocab in (B, A, A_REV, G1, G2):
            if switch == 'assign':
                seg.class_names = [list(c) for c in vocab]
            else:
                seg.set_class_names(vocab)
            ref.text_encoder._cache.clear()
            flat = [n for c in vocab for n in c]
            torch.testing.assert_close(seg.class_embeddings(), ref.text_encoder(flat),
                                       rtol=0, atol=0)
            out = seg.predict(img)[0]
            assert seg.num_classes == len(vocab)
            assert seg.name_to_class.tolist() == [i for i, c in enumerate(vocab) for _ in c]
            ref.set_class_names(vocab)
            ref.text_embeddings = ref.text_embeddings.new_empty(0)
            want = ref.predict(img)[0]
            torch.testing.assert_close(out.pred_sem_seg.data, want.pred_sem_seg.data)


def test_catseg_segmentor_name_to_class_follows_the_list():
    torch.manual_seed(0)
    seg = MODELS.build(tiny_segmentor_cfg(class_names=[c for c in G1])).eval()
    with torch.no_grad():
        seg.class_embeddings()
        seg.class_names = [list(c) for c in G2]  # same length, same flattened names
        got = seg.class_embeddings()
        per_name = seg.text_encoder(['sky', 'grass', 'road'], per_template=True).double()
    # CAT-Seg's class embedding: the mean of its names' normalised embeddings, renormalised
    want = torch.stack([per_name[0], F.normalize(per_name[1:].mean(0), dim=-1)])
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6)
    assert seg.num_classes == 2 and seg.name_to_class.tolist() == [0, 1, 1]
    seg.set_class_names(A_REV)
    assert seg.num_classes == 3 and seg.name_to_class.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match='non-empty list'):
        seg.set_class_names('sky')


def test_text_encoder_cache_same_length_and_order():
    cfg = tiny_clip_config('eva02')
    torch.manual_seed(0)
    enc = DeCLIPTextEncoder(cfg, templates='single').eval()
    torch.manual_seed(0)
    ref = DeCLIPTextEncoder(cfg, templates='single').eval()
    flat = {k: [n for c in v for n in c] for k, v in dict(A=A, B=B, A_REV=A_REV).items()}
    first = {}
    with torch.no_grad():
        for k in ('A', 'B', 'A', 'A_REV', 'B'):
            got = enc(flat[k])
            ref._cache.clear()
            torch.testing.assert_close(got, ref(flat[k]), rtol=0, atol=0)
            first.setdefault(k, got)
            assert got is first[k]  # switching back is a cache hit, never another list's entry
    torch.testing.assert_close(first['A_REV'], first['A'].flip(0), rtol=0, atol=1e-6)
