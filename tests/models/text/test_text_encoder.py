import pytest
import torch
from declip_reference import reference_class_embeddings, rel_err

from declip_mm.models import DeCLIPTextEncoder
from declip_mm.models.text import get_templates
from declip_mm.testing import tiny_clip_config


def test_templates():
    assert len(get_templates('imagenet80')) == 80
    assert get_templates('single') == ('a photo of a {}.', )
    assert all('{}' in t for t in get_templates('vild'))
    with pytest.raises(ValueError, match='unknown template set'):
        get_templates('imagenet81')
    with pytest.raises(ValueError, match='exactly one'):
        get_templates(['no placeholder'])


def test_prompt_ensembling_matches_reference(tiny_cfg):
    import open_clip
    enc = DeCLIPTextEncoder(tiny_cfg, templates='vild').eval()
    names = [['cat', 'kitty'], 'dog', ['traffic light']]
    emb = enc(names)
    flat = ['cat', 'kitty', 'dog', 'traffic light']
    assert emb.shape == (4, 32)
    # reference through open_clip's own encode_text on the same text weights
    clip_cls = open_clip.model.CustomTextCLIP if tiny_cfg.get('custom_text') else open_clip.model.CLIP
    ref_cfg = {k: v for k, v in tiny_cfg.items() if k != 'custom_text'}
    ref_cfg['vision_cfg'] = tiny_clip_config('openai')['vision_cfg']  # the image side is irrelevant
    ref_model = clip_cls(**ref_cfg).eval()
    if tiny_cfg.get('custom_text'):
        ref_model.text.load_state_dict(enc.text.state_dict())
    else:
        for k, v in enc.text.state_dict().items():
            ref_model.state_dict()[k].copy_(v)
    with torch.no_grad():
        ref = reference_class_embeddings(ref_model.encode_text, enc.tokenizer, flat, enc.templates)
    assert rel_err(emb, ref) <= 1e-5
    assert torch.equal(enc.name_to_class_index(names), torch.tensor([0, 0, 1, 2]))


def test_cache_keyed_by_names(tiny_cfg):
    enc = DeCLIPTextEncoder(tiny_cfg, templates='single')
    a = enc(['cat', 'dog'])
    assert enc(['cat', 'dog']) is a
    b = enc(['dog', 'cat'])
    assert b is not a and torch.allclose(b[0], a[1])
    assert len(enc._cache) == 2
    assert not any(k.startswith('_cache') for k in enc.state_dict())


def test_bad_names(tiny_cfg):
    enc = DeCLIPTextEncoder(tiny_cfg, templates='single')
    with pytest.raises(ValueError, match='non-empty name'):
        enc(['cat', []])
    with pytest.raises(ValueError, match='non-empty name'):
        enc(['cat', ' '])


def test_frozen_by_default(tiny_cfg):
    enc = DeCLIPTextEncoder(tiny_cfg, templates='single')
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training


def test_truncated_causal_encoding_equals_full_length(tiny_cfg):
    enc = DeCLIPTextEncoder(tiny_cfg, templates='single')
    assert enc._can_truncate()
    tokens = enc.tokenizer(['a photo of a cat.', 'a much longer photo description of a small dog'])
    with torch.no_grad():
        full = enc.text(tokens)
        short = enc._encode_tokens(tokens)
    assert rel_err(short, full) <= 1e-5
