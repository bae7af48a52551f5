import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.dataset import pseudo_collate
from PIL import Image
from region_cls_helpers import pipeline
from roi_align_reference import roi_align_1x1_reference

from declip_mm.datasets.transforms import CLIP_MEAN, CLIP_STD, letterbox
from declip_mm.registry import DATASETS, MODELS


def _crop_tensor(img, box, size):
    crop = np.asarray(Image.fromarray(img).crop(box))
    lb, _ = letterbox(crop, size, centre=True)
    t = torch.from_numpy(lb).permute(2, 0, 1).double() / 255.0
    return (t - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)


def test_three_features_match_float64_references(tmp_path, tiny_cfg, family):
    """rois / maskpool of the backbone's content map vs roi_align and mask pooling written from
    their definitions in float64; crops vs encode_image of crops cut independently."""
    from declip_mm.testing import write_panoptic_fixture
    images = [dict(size=(48, 64), segments=[(187, (0, 0, 64, 24)), (149, (0, 24, 64, 48)),
                                            (1, (5, 3, 27, 20)), (3, (30, 26, 61, 45))]),
              dict(size=(64, 40), segments=[(118, (0, 0, 40, 64)), (44, (7, 9, 30, 50))])]
    root = write_panoptic_fixture(str(tmp_path), images=images)
    ds = DATASETS.build(dict(type='COCOPanopticRegionDataset', data_root=root,
                             pipeline=pipeline(size=64, patch=8, crop=32)))
    model = MODELS.build(dict(
        type='DeCLIPRegionClassifier',
        backbone=dict(type='DeCLIPVisionTransformer', model_name=tiny_cfg, attn_mode='csa'),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=tiny_cfg, templates='single'),
        crop_batch_size=3)).eval()
    data = model.data_preprocessor(pseudo_collate([ds[0], ds[1]]))
    inputs = data['inputs']
    with torch.no_grad():
        feats = model.region_features(inputs)
        content = model.backbone(inputs['imgs'])['content'].double()
    k = inputs['rois'].shape[0]
    assert k == 6 and all(f.shape == (k, 32) for f in feats.values())
    for i in range(k):
        b = int(inputs['batch_index'][i])
        ref = F.normalize(roi_align_1x1_reference(content[b], inputs['rois'][i, 1:]), dim=0)
        assert torch.allclose(feats['rois'][i].double(), ref, atol=1e-5), i
        m = inputs['masks'][i]
        assert m.any()
        ref = F.normalize(content[b][:, m].mean(1), dim=0)
        assert torch.allclose(feats['maskpool'][i].double(), ref, atol=1e-5), i
    # crops: things with the 1.5x box clipped to the image, stuff with mask2box
    img0 = np.asarray(Image.open(ds.get_data_info(0)['img_path']).convert('RGB'))
    person_crop = _crop_tensor(img0, (0.0, 0.0, 32.5, 24.25), 32)  # bbox (5, 3, 22, 17) x 1.5
    road_crop = _crop_tensor(img0, (0, 24, 63, 47), 32)
    with torch.no_grad():
        ref = model.backbone.encode_image(torch.stack([road_crop, person_crop]).float(),
                                          normalize=True)
    labels = data['data_samples'][0].labels.tolist()
    assert labels == [6, 5, 0, 1]
    assert torch.allclose(feats['crops'][[1, 2]], ref, atol=1e-5)
    for f in feats.values():
        assert torch.allclose(f.norm(dim=-1), torch.ones(k), atol=1e-5)


def test_predict_outputs_and_empty_mask(tmp_path):
    from declip_mm.testing import tiny_clip_config, write_panoptic_fixture
    root = write_panoptic_fixture(str(tmp_path))
    ds = DATASETS.build(dict(type='COCOPanopticRegionDataset', data_root=root,
                             pipeline=pipeline(size=64, patch=8, crop=32)))
    cfg = tiny_clip_config('eva02')
    model = MODELS.build(dict(
        type='DeCLIPRegionClassifier', features=('maskpool', ),
        backbone=dict(type='DeCLIPVisionTransformer', model_name=cfg),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=cfg, templates='single'))).eval()
    batch = pseudo_collate([ds[0]])
    batch['inputs']['masks'][0][1] = False     # a region with no token at the grid
    (out, ) = model.test_step(batch)
    assert set(out) == {'img_id', 'seg_ids', 'labels', 'is_thing', 'pred_maskpool'}
    assert out['pred_maskpool'].shape == (4, 5)
    assert (out['pred_maskpool'][1] == -1).all() and (out['pred_maskpool'][0] >= 0).all()
    with pytest.raises(ValueError, match='non-empty subset'):
        MODELS.build(dict(type='DeCLIPRegionClassifier', backbone=None, features=('boxes', ),
                          text_encoder=dict(type='DeCLIPTextEncoder', model_name=cfg)))
    # masks computed for another grid than the backbone's
    bad = DATASETS.build(dict(type='COCOPanopticRegionDataset', data_root=root,
                              pipeline=pipeline(size=64, patch=16, crop=32)))
    with pytest.raises(ValueError, match='image_size / patch_size of the backbone'):
        model.test_step(pseudo_collate([bad[0]]))


def test_class_embeddings_disk_cache(tmp_path, monkeypatch):
    from declip_mm.testing import tiny_clip_config
    cfg = tiny_clip_config('openai')
    weights = tmp_path / 'clip.pth'
    import open_clip
    torch.save(open_clip.model.CLIP(**cfg).state_dict(), weights)   # an open_clip checkpoint

    def build(templates='single'):
        model = MODELS.build(dict(
            type='DeCLIPRegionClassifier', backbone=None, embedding_cache_dir=str(tmp_path / 'c'),
            text_encoder=dict(type='DeCLIPTextEncoder', model_name=cfg, pretrained=str(weights),
                              templates=templates)))
        model.init_weights()
        return model

    uninit = MODELS.build(dict(type='DeCLIPRegionClassifier', backbone=None,
                               embedding_cache_dir=str(tmp_path / 'c'),
                               text_encoder=dict(type='DeCLIPTextEncoder', model_name=cfg,
                                                 pretrained=str(weights))))
    uninit.class_embeddings(['cat', 'sky'])   # weights not loaded yet: not cached
    assert not (tmp_path / 'c').exists()
    first = build()
    emb = first.class_embeddings(['cat', 'sky'])
    assert len(list((tmp_path / 'c').iterdir())) == 1
    second = build()   # a new model: read from disk, the text tower is not run
    monkeypatch.setattr(second.text_encoder, 'forward', lambda names: 1 / 0)
    assert torch.equal(second.class_embeddings(['cat', 'sky']), emb)
    with pytest.raises(ZeroDivisionError):
        second.class_embeddings(['cat', 'dog'])     # another class list: not cached
    build('vild').class_embeddings(['cat', 'sky'])  # other templates: another file
    assert len(list((tmp_path / 'c').iterdir())) == 2
