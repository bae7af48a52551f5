"""float64 references of the ViTDet-style resampler branches (SimplePyramidResampler), from the
operators' definitions: transposed conv k=2 s=2, LayerNorm over channels, exact GELU, max-pooling."""
import math

import torch


def _deconv2x_ref(x, weight, bias):
    """ConvTranspose2d(k=2, s=2): every input pixel writes a 2x2 block W[c, o, a, b]·x[c]."""
    n, _, h, w = x.shape
    out = torch.einsum('ncij,copq->noipjq', x, weight).reshape(n, weight.shape[1], 2 * h, 2 * w)
    return out + bias.view(1, -1, 1, 1)


def _ln_ref(x, weight, bias, eps):
    mu = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def _gelu_ref(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0)))


def _maxpool_ref(x, k):
    b, c, h, w = x.shape
    return x[..., :h // k * k, :w // k * k].reshape(b, c, h // k, k, w // k, k).amax(dim=(3, 5))


def resample_ref(op, x, scale):
    """float64 reference of one branch, reading the module's weights."""
    x = x.double()
    if scale == 1.0:
        return x
    if scale < 1.0:
        return _maxpool_ref(x, int(round(1 / scale)))
    layers = list(op)
    for layer in layers:
        p = {k: v.detach().double() for k, v in layer.named_parameters()}
        if isinstance(layer, torch.nn.ConvTranspose2d):
            x = _deconv2x_ref(x, p['weight'], p['bias'])
        elif isinstance(layer, torch.nn.LayerNorm):
            x = _ln_ref(x, p['weight'], p['bias'], layer.eps)
        else:
            x = _gelu_ref(x)
    return x
