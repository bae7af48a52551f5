import os

import numpy as np
from PIL import Image
from tf_helpers import load_tool

quickstart = load_tool('quickstart')


def test_quickstart_reduced(tmp_path, capsys):
    out = tmp_path / 'qs'
    metrics = quickstart.main(['--out-dir', str(out), '--random-towers', '--epochs', '2',
                               '--max-side', '96', '--eval-short-side', '64'])
    text = capsys.readouterr().out
    assert 'RANDOM weights' in text
    assert '| epoch | loss_content | loss_context | loss |' in text and '| 2 |' in text
    assert (out / 'train' / 'declip_epoch_2.pth').exists()
    # the printed row is the evaluation's result; per class IoU <= accuracy (union >= GT area),
    # and classes predicted but absent from the GT add IoU 0 to the mean: mIoU <= mAcc
    row = next(line for line in text.splitlines() if line.startswith('| fixture ADE20K'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[1:] == [f"{metrics[k]:.1f}" for k in ('aAcc', 'mIoU', 'mAcc')]
    assert metrics['mIoU'] <= metrics['mAcc'] + 1e-9
    overlays = os.listdir(out / 'overlays')
    assert len(overlays) >= 2 and all(f.endswith('_overlay.png') for f in overlays)
    assert f'Outputs in {out}' in text


def test_out_dir_with_user_files_is_refused_and_kept(tmp_path):
    """Issue 14.2: --out-dir never deletes what the quick-start did not create."""
    import pytest
    user = tmp_path / 'mine'
    (user / 'src').mkdir(parents=True)
    (user / 'notes.txt').write_text('precious')
    (user / 'src' / 'a.py').write_text('x = 1')
    (user / 'train').mkdir()
    (user / 'train' / 'run.log').write_text('my own training')
    with pytest.raises(SystemExit, match='not empty and is not a quick-start output'):
        quickstart.main(['--out-dir', str(user), '--epochs', '1'])
    assert (user / 'notes.txt').read_text() == 'precious'
    assert (user / 'src' / 'a.py').read_text() == 'x = 1'
    assert (user / 'train' / 'run.log').read_text() == 'my own training'
    assert not (user / quickstart.MARKER).exists()
    afile = tmp_path / 'file.txt'
    afile.write_text('keep')
    with pytest.raises(SystemExit, match='is a file'):
        quickstart.main(['--out-dir', str(afile)])
    assert afile.read_text() == 'keep'


def test_rerun_clears_only_its_own_outputs(tmp_path):
    out = tmp_path / 'qs'
    quickstart.prepare_out_dir(str(out))          # a fresh folder gets the marker
    assert (out / quickstart.MARKER).is_file()
    for name in ('data', 'train', 'eval', 'overlays'):
        (out / name).mkdir()
        (out / name / 'old.bin').write_text('old')
    (out / 'arch.json').write_text('{}')
    (out / 'my_notes.txt').write_text('mine')
    quickstart.prepare_out_dir(str(out))
    assert sorted(os.listdir(out)) == sorted([quickstart.MARKER, 'my_notes.txt'])
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert quickstart.prepare_out_dir(str(empty)) == str(empty)


def test_skipped_sample_photo_is_reported(monkeypatch, capsys):
    """Issue 14.10: a sample photo this scikit-image cannot provide is named, not skipped silently."""
    from skimage import data

    def needs_download():
        raise OSError('would download coffee.png')

    monkeypatch.setattr(data, 'coffee', needs_download)
    photos = quickstart.sample_photos(32)
    assert 'coffee' not in photos and 'astronaut' in photos
    assert "skipped sample photo 'coffee'" in capsys.readouterr().out


def test_every_sample_photo_ships_with_scikit_image(capsys):
    """Issue 24.8: each photo the quick-start names loads offline from the installed scikit-image
    (``motorcycle_left`` is no ``skimage.data`` function: its file is ``stereo_motorcycle``'s left
    view)."""
    from skimage import data
    photos = quickstart.sample_photos(64)
    assert 'skipped' not in capsys.readouterr().out
    assert list(photos) == list(quickstart.PHOTOS)
    left = Image.fromarray(data.stereo_motorcycle()[0]).resize((64, 43), Image.BICUBIC)
    np.testing.assert_array_equal(photos['motorcycle'], np.asarray(left))
    assert all(p.dtype == np.uint8 and p.ndim == 3 and max(p.shape[:2]) == 64
               for p in photos.values())
