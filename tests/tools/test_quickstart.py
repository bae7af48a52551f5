import os

from tf_helpers import load_tool

quickstart = load_tool('quickstart')


def test_quickstart_reduced(tmp_path, capsys):
    out = tmp_path / 'qs'
    metrics = quickstart.main(['--out-dir', str(out), '--epochs', '2', '--max-side', '96',
                               '--eval-short-side', '64'])
    text = capsys.readouterr().out
    assert 'RANDOM weights' in text
    assert '| epoch | loss_content | loss_context | loss |' in text and '| 2 |' in text
    assert (out / 'train' / 'declip_epoch_2.pth').exists()
    assert 'mIoU' in metrics and '| fixture ADE20K' in text
    overlays = os.listdir(out / 'overlays')
    assert len(overlays) >= 2 and all(f.endswith('_overlay.png') for f in overlays)
    assert f'Outputs in {out}' in text
