"""Proxy-token scores on constructed attention maps with known answers."""
import math

import pytest
import torch

from declip_mm.analysis import (
    attention_entropy,
    keys_for_mass,
    proxy_scores,
    token_correlation,
    topk_shared_mass,
)


def uniform(nq, nk):
    return torch.full((nq, nk), 1.0 / nk, dtype=torch.float64)


def one_key(nq, nk, j):
    a = torch.zeros(nq, nk, dtype=torch.float64)
    a[:, j] = 1
    return a


def proxy(nq, nk, j, p):
    """every query puts p on key j and 1 - p spread evenly over the others"""
    a = torch.full((nq, nk), (1 - p) / (nk - 1), dtype=torch.float64)
    a[:, j] = p
    return a


def test_uniform_attention():
    a = uniform(6, 8)
    assert float(topk_shared_mass(a, 2)) == pytest.approx(2 / 8)
    assert float(attention_entropy(a)) == pytest.approx(math.log(8))
    assert float(attention_entropy(a, normalized=True)) == pytest.approx(1.0)
    assert int(keys_for_mass(a, 0.5)) == 4
    assert int(keys_for_mass(a, 1.0)) == 8


def test_all_queries_on_one_shared_key():
    a = one_key(6, 8, 3)
    assert float(topk_shared_mass(a, 1)) == pytest.approx(1.0)
    assert float(attention_entropy(a)) == pytest.approx(0.0)
    assert int(keys_for_mass(a, 0.5)) == 1 and int(keys_for_mass(a, 1.0)) == 1


def test_peaked_but_local_attention_is_not_shared():
    a = torch.eye(8, dtype=torch.float64)  # every query looks only at itself
    assert float(attention_entropy(a)) == pytest.approx(0.0)  # as peaked as a proxy token...
    assert float(topk_shared_mass(a, 1)) == pytest.approx(1 / 8)  # ...but nothing is shared
    assert float(topk_shared_mass(a, 3)) == pytest.approx(3 / 8)
    assert int(keys_for_mass(a, 0.5)) == 4


def test_proxy_token_with_background_mass():
    a = proxy(5, 10, 0, 0.6)
    assert float(topk_shared_mass(a, 1)) == pytest.approx(0.6)
    assert float(topk_shared_mass(a, 2)) == pytest.approx(0.6 + 0.4 / 9)
    ent = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4 / 9))
    assert float(attention_entropy(a)) == pytest.approx(ent)
    assert int(keys_for_mass(a, 0.5)) == 1
    assert int(keys_for_mass(a, 0.7)) == 4  # 0.6 + 3 * 0.4/9 = 0.733 >= 0.7 > 0.6 + 2 * 0.4/9


def test_mixed_queries_and_leading_dims():
    # half the queries on key 0, half on key 1: top-1 shared mass 1/2, top-2 = 1
    a = torch.cat([one_key(4, 6, 0), one_key(4, 6, 1)])
    assert float(topk_shared_mass(a, 1)) == pytest.approx(0.5)
    assert float(topk_shared_mass(a, 2)) == pytest.approx(1.0)
    assert int(keys_for_mass(a, 0.5)) == 1 and int(keys_for_mass(a, 0.75)) == 2
    stack = torch.stack([uniform(8, 8), torch.eye(8, dtype=torch.float64)])
    assert topk_shared_mass(stack, 1).shape == (2, )
    torch.testing.assert_close(attention_entropy(stack), torch.tensor([math.log(8), 0.0],
                                                                      dtype=torch.float64))
    s = proxy_scores(proxy(5, 10, 0, 0.6), k=1, frac=0.5)
    assert s['topk_mass'] == pytest.approx(0.6) and s['keys_for_mass'] == 1
    assert 0 < s['entropy_norm'] < 1


def test_token_correlation():
    f = torch.zeros(3, 2, 3, dtype=torch.float64)
    f[:, 0, 0] = torch.tensor([1.0, 0, 0])
    f[:, 1, 2] = torch.tensor([2.0, 0, 0])    # same direction
    f[:, 0, 1] = torch.tensor([0.0, 1, 0])    # orthogonal
    f[:, 1, 0] = torch.tensor([-1.0, 0, 0])   # opposite
    f[:, 0, 2] = torch.tensor([1.0, 1, 0])    # 45 degrees
    f[:, 1, 1] = torch.tensor([0.0, 0, 1])
    c = token_correlation(f, (0, 0))
    expect = torch.tensor([[1, 0, math.sqrt(0.5)], [-1, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(c, expect)


def test_bad_inputs():
    with pytest.raises(ValueError, match='k must be in'):
        topk_shared_mass(uniform(2, 4), 0)
    with pytest.raises(ValueError, match='frac must be in'):
        keys_for_mass(uniform(2, 4), 0.0)
    with pytest.raises(ValueError, match='non-negative'):
        attention_entropy(-uniform(2, 4))
    with pytest.raises(ValueError, match=r'\(\.\.\., Nq, Nk\)'):
        keys_for_mass(torch.ones(4))
    with pytest.raises(ValueError, match='outside'):
        token_correlation(torch.ones(3, 2, 2), (2, 0))
