"""A trainable text tower (CAT-Seg fine-tuning): embeddings carry gradients and are never cached in
training; in eval mode they are cached, and the cache is dropped when training resumes."""
import torch
import torch.nn.functional as F

from declip_mm.models import DeCLIPTextEncoder
from declip_mm.testing import tiny_clip_config


def test_trainable_tower_caches_only_in_eval_mode():
    torch.set_num_threads(1)
    enc = DeCLIPTextEncoder(tiny_clip_config('openai'), templates='single', frozen=False).train()
    a = enc(['cat', 'dog'])
    assert a.requires_grad and not enc._cache
    a.sum().backward()
    assert enc.text.positional_embedding.grad is not None
    with torch.no_grad():
        enc.text.transformer.resblocks[0].attn.in_proj_bias.add_(0.5)  # an optimizer step
    b = enc(['cat', 'dog'])
    assert not torch.allclose(a, b)   # no stale embeddings in training
    enc.eval()
    with torch.no_grad():
        c = enc(['cat', 'dog'])
    assert enc(['cat', 'dog']) is c   # cached while the weights are fixed
    torch.testing.assert_close(c, b.detach())
    enc.train()
    assert not enc._cache             # training again: the cache is dropped
    with torch.no_grad():
        enc.text.transformer.resblocks[0].attn.in_proj_bias.add_(0.5)
    enc.eval()
    d = enc(['cat', 'dog'])
    assert not torch.allclose(d, c)
    # weights loaded in eval mode (a segmentor checkpoint after a first forward): no stale cache
    other = DeCLIPTextEncoder(tiny_clip_config('openai'), templates='single', frozen=False).eval()
    other.load_state_dict(enc.state_dict())
    torch.testing.assert_close(other(['cat', 'dog']), d)
    torch.manual_seed(1)
    fresh = DeCLIPTextEncoder(tiny_clip_config('openai'), templates='single', frozen=False)
    other.load_state_dict(fresh.state_dict())
    torch.testing.assert_close(other(['cat', 'dog']), fresh.eval()(['cat', 'dog']))


def test_per_template_embeddings():
    enc = DeCLIPTextEncoder(tiny_clip_config('openai'), templates=['a {}.', 'the {} here']).eval()
    per = enc(['cat', 'dog'], per_template=True)
    assert per.shape == (2, 2, 32)
    torch.testing.assert_close(per.norm(dim=-1), torch.ones(2, 2))
    torch.testing.assert_close(enc(['cat', 'dog']), F.normalize(per.mean(1), dim=-1))
    raw = enc.encode_text(['a cat.', 'the cat here'])
    torch.testing.assert_close(per[0], raw)
