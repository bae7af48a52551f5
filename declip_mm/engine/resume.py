"""Which checkpoint ``tools/train.py --resume`` (no path) continues from.

mmengine's automatic resume reads the work dir's ``last_checkpoint`` file, which holds the *absolute*
path written by the run that saved it, and loads that file as it is. Two cases go wrong:

* a work dir copied elsewhere (another disk, a colleague's folder) resumes from the original's
  checkpoint, not from its own copy, and fails if the original is gone;
* a last checkpoint cut short (disk full, a kill during the save) stops the resume although the
  previous epoch's checkpoint is intact.

:func:`resolve_auto_resume` looks in the work dir itself: the checkpoint ``last_checkpoint`` names,
by file name, in this work dir; if that file is unreadable (empty, or a zip archive, as ``torch.save``
writes, without its central directory, i.e. cut short), the newest readable
``epoch_<N>.pth`` / ``iter_<N>.pth`` below it, with a warning naming both files.
"""
from __future__ import annotations

import os
import os.path as osp
import re
import zipfile
from typing import List, Optional, Tuple

__all__ = ['resolve_auto_resume', 'checkpoint_problem', 'training_checkpoints']

_CKPT = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be a complete ``torch.save`` file (None: it looks complete).

    Only the zip directory at the end of the file is read (what a truncated file lacks); the tensors
    themselves are checked when they are loaded.
    """
    if not osp.isfile(path):
        return 'file not found'
    size = osp.getsize(path)
    if size == 0:
        return 'empty file (0 bytes)'
    try:
        with zipfile.ZipFile(path) as zf:
            if not zf.namelist():
                return 'empty archive'
    except zipfile.BadZipFile:
        with open(path, 'rb') as f:
            head = f.read(4)
        if head.startswith(b'PK'):
            return f'truncated or corrupt ({size} bytes, no zip directory at its end)'
        return None  # a legacy (non-zip) torch file: left to torch.load
    except OSError as err:
        return f'unreadable ({err})'
    return None


def training_checkpoints(work_dir: str) -> List[Tuple[int, str]]:
    """``(number, path)`` of ``epoch_<N>.pth`` / ``iter_<N>.pth`` in ``work_dir``, newest first."""
    out = []
    for name in os.listdir(work_dir) if osp.isdir(work_dir) else []:
        m = _CKPT.match(name)
        if m:
            out.append((int(m.group(2)), osp.join(work_dir, name)))
    return sorted(out, reverse=True)


def resolve_auto_resume(work_dir: str) -> Tuple[Optional[str], List[str]]:
    """The checkpoint to resume from in ``work_dir`` and the warnings to log.

    Returns:
        (path or None when the work dir holds no checkpoint to resume from, messages).

    Raises:
        RuntimeError: checkpoints exist but none is readable (each is named with its problem).
    """
    notes: List[str] = []
    record = osp.join(work_dir, 'last_checkpoint')
    named = None
    if osp.isfile(record):
        with open(record) as f:
            named = f.read().strip() or None
    local = training_checkpoints(work_dir)
    if named is None and not local:
        return None, notes
    first = None
    if named is not None:
        first = osp.join(work_dir, osp.basename(named))
        if osp.realpath(osp.dirname(osp.abspath(named))) != osp.realpath(work_dir):
            notes.append(f'{record} names {named}, outside this work dir (a copied work dir?): '
                         f'resuming from this work dir\'s {first} instead')
    # the named checkpoint first, then the others from the newest down (those above the named one
    # are skipped: last_checkpoint is written after each save, so they are not from this run)
    order = []
    if first is not None:
        order.append(first)
        m = _CKPT.match(osp.basename(first))
        limit = int(m.group(2)) if m else None
        order += [p for n, p in local if p != first and (limit is None or n < limit)]
    else:
        order = [p for _, p in local]
    problems = []
    for path in order:
        problem = checkpoint_problem(path)
        if problem is None:
            if problems:
                bad = '; '.join(f'{p}: {why}' for p, why in problems)
                notes.append(f'cannot resume from {bad}; falling back to the previous checkpoint '
                             f'{path}')
            return path, notes
        problems.append((path, problem))
    listed = '; '.join(f'{p}: {why}' for p, why in problems) or 'none found'
    raise RuntimeError(f'--resume: no readable checkpoint in {work_dir} ({listed}). Start without '
                       '--resume, or pass --resume <checkpoint> explicitly')
