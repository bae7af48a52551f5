import torch
import torch.nn.functional as F

from declip_mm.models import DeCLIPTextEncoder
from declip_mm.models.text import fill_template, get_templates
from declip_mm.testing import tiny_clip_config


def test_hand_craft_templates_and_prompt_rule():
    t = get_templates('vild_hand_craft')
    assert len(t) == 63 and len(set(t)) == 63
    assert fill_template(t[0], 'person') == 'There is a person in the scene.'
    assert fill_template(t[2], 'airplane') == 'This is a photo of an airplane in the scene.'
    assert fill_template(t[7], 'wall-other-merged') == 'itap of the wall-other-merged.'
    assert fill_template(t[-4], 'orange') == 'This is an embroidered orange.'
    assert fill_template(t[-1], 'hair drier') == 'This is a painting of a hair drier.'
    # the official name rule: lower case, '_' -> ' ', '/' -> ' or ', trailing dots dropped
    assert fill_template(t[8], 'Stop_sign/Board.') == 'This is a photo of a stop sign or board.'
    # plain '{}' templates are filled as before
    assert fill_template('a photo of a {}.', 'Apple_pie') == 'a photo of a Apple_pie.'
    starts = {p.split(' ')[0] for p in t}
    assert starts == {'There', 'This', 'itap'}


def test_text_encoder_uses_the_rule():
    enc = DeCLIPTextEncoder(tiny_clip_config('openai'), templates='vild_hand_craft').eval()
    names = ['apple', 'tree-merged']
    emb = enc(names)
    prompts = [[fill_template(t, n) for t in enc.templates] for n in names]
    with torch.no_grad():
        ref = torch.stack([F.normalize(enc.encode_text(p).mean(0), dim=0) for p in prompts])
    assert torch.allclose(emb, ref, atol=1e-6)
    assert prompts[0][8] == 'This is a photo of an apple.'
    assert prompts[1][0] == 'There is a tree-merged in the scene.'
