"""Map a detector's test-time vocabulary onto the evaluation dataset's categories, by name.

A detector's labels index *its* vocabulary (``bbox_head.classes``), while mmdet's COCO metrics read a
label as an index into the dataset's ``metainfo['classes']`` (``cat_ids[label]``). With another
vocabulary (``--cfg-options model.roi_head.bbox_head.classes=[...]``) label 0 "zebra" would be scored
as the dataset's category 0 "person". :func:`vocabulary_label_map` matches the two lists by name
(case and surrounding blanks ignored; any synonym of a vocabulary entry counts):

* every dataset category must be found exactly once in the vocabulary, or the evaluation is refused
  (a category the detector cannot name would be scored as missed: its AP would be meaningless);
* vocabulary entries that are no dataset category (extra names, "distractors") keep competing in the
  classifier's softmax, and their boxes are dropped before the metric (class-wise NMS makes that the
  same as never scoring them);
* identical lists (same names, same order) need no map (``None``).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

__all__ = ['vocabulary_label_map']

Vocabulary = Sequence[Union[str, Sequence[str]]]


def _names(entry: Union[str, Sequence[str]]) -> List[str]:
    return [entry] if isinstance(entry, str) else [str(n) for n in entry]


def _key(name: str) -> str:
    return ' '.join(str(name).lower().split())


def vocabulary_label_map(vocabulary: Vocabulary, dataset_classes: Sequence[str],
                         source: str = 'the detector') -> Optional[List[int]]:
    """``label_map[k]``: the dataset index of vocabulary entry ``k``, or -1 (not a dataset category).

    Returns None when the primary names equal the dataset's classes in order (labels already are
    dataset indices).

    Raises:
        ValueError: a dataset category is missing from the vocabulary or named by several entries.
    """
    primary = [_names(e)[0] for e in vocabulary]
    if [_key(n) for n in primary] == [_key(c) for c in dataset_classes]:
        return None
    where = {}
    for k, entry in enumerate(vocabulary):
        for name in _names(entry):
            where.setdefault(_key(name), set()).add(k)
    missing = [c for c in dataset_classes if _key(c) not in where]
    twice = [f'{c!r} (entries {sorted(where[_key(c)])})' for c in dataset_classes
             if len(where.get(_key(c), ())) > 1]
    if missing or twice:
        msg = [f"the vocabulary of {source} ({len(vocabulary)} classes: "
               f"{', '.join(primary[:8])}{' ...' if len(primary) > 8 else ''}) cannot be scored "
               f"against the test dataset's {len(dataset_classes)} categories by name:"]
        if missing:
            msg.append(f'  {len(missing)} dataset categor{"y is" if len(missing) == 1 else "ies are"}'
                       f' not in the vocabulary: {", ".join(missing[:12])}'
                       f'{" ..." if len(missing) > 12 else ""}')
        if twice:
            msg.append(f'  named by several vocabulary entries: {"; ".join(twice[:6])}')
        msg.append('  Include every dataset category (extra names are allowed: their boxes are '
                   'not scored), or evaluate on a dataset whose metainfo classes are your '
                   'vocabulary (test_dataloader.dataset.metainfo.classes and a matching '
                   'annotation file).')
        raise ValueError('\n'.join(msg))
    out = [-1] * len(vocabulary)
    for j, c in enumerate(dataset_classes):
        (k, ) = where[_key(c)]
        if out[k] >= 0:
            raise ValueError(f'vocabulary entry {k} {_names(vocabulary[k])} of {source} names two '
                             f'dataset categories, {dataset_classes[out[k]]!r} and {c!r}: give '
                             'each its own entry')
        out[k] = j
    return out
