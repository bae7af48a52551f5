"""parse_classes: strings are class names (never files), class files only from a Path, one separator
rule for files, duplicate names refused, wrong types named (issue 24.1 / 24.7)."""
from pathlib import Path

import pytest

from declip_mm.apis import parse_classes
from declip_mm.apis.vocabulary import read_class_file


def test_a_string_is_never_read_as_a_file(tmp_path, monkeypatch):
    secret = tmp_path / 'cat'
    secret.write_text('root:x:0:0\nsecret-line\n')
    monkeypatch.chdir(tmp_path)
    assert parse_classes('cat') == [['cat']]                         # ./cat exists: still a name
    assert parse_classes(str(secret)) == [[str(secret)]]             # an absolute path too
    assert parse_classes(f'{secret}; dog') == [[str(secret)], ['dog']]
    assert parse_classes(['cat', [str(secret)]]) == [['cat'], [str(secret)]]
    # the explicit way to read a file
    assert parse_classes(Path('cat')) == [['root:x:0:0'], ['secret-line']]


def test_class_file_separator_rule(tmp_path):
    f = tmp_path / 'classes.txt'
    f.write_text('# my classes\ngrass, lawn\nsky; heaven\n\nperson ; man, woman\n')
    want = [['grass', 'lawn'], ['sky', 'heaven'], ['person', 'man', 'woman']]
    assert parse_classes(f) == want                   # ',' and ';' both split synonyms in a file
    assert read_class_file(f) == want
    assert parse_classes('grass, lawn; sky, heaven; person, man, woman') == want  # the string form
    # one separator only, when asked (e.g. names that contain commas)
    assert parse_classes(f, separator=';')[0] == ['grass, lawn']
    assert parse_classes(f, separator=',')[1] == ['sky; heaven']
    with pytest.raises(FileNotFoundError, match='not found'):
        parse_classes(tmp_path / 'missing.txt')


def test_duplicate_names(tmp_path):
    # one name for two classes would split its probability: refused, both classes named
    with pytest.raises(ValueError, match=r"'sky' is in class 1 \('sky'\) and in class 3 "
                                         r"\('air'\).*one class only.*\"sky, air\""):
        parse_classes('sky; grass; air, sky')
    with pytest.raises(ValueError, match="'Grass' is in class 1"):      # case does not matter
        parse_classes([['grass', 'lawn'], ['Grass']])
    with pytest.raises(ValueError, match="'sky' is in class 1"):      # nor runs of spaces
        parse_classes(['sky', 'cloud', ' sky'])
    f = tmp_path / 'dup.txt'
    f.write_text('cat\ndog, cat\n')
    with pytest.raises(ValueError, match=r"class file .*dup.txt.*'cat' is in class 1"):
        parse_classes(f)
    # a name repeated inside one class is kept once (same class, nothing split)
    assert parse_classes('grass, lawn, Grass; sky') == [['grass', 'lawn'], ['sky']]
    assert parse_classes([['a', 'a', 'b']]) == [['a', 'b']]


def test_wrong_types_are_named():
    with pytest.raises(TypeError, match=r'classes must be a string .*got int 5'):
        parse_classes(5)
    with pytest.raises(TypeError, match='classes must be a string'):
        parse_classes({'cat': 1})
    with pytest.raises(TypeError, match=r'class 2 of the list is 3 \(int\)'):
        parse_classes(['cat', 3])
    with pytest.raises(TypeError, match=r"class 1 of the list is \['a', None\]"):
        parse_classes([['a', None]])
    with pytest.raises(ValueError, match='no class names'):
        parse_classes(' ; ,')
    with pytest.raises(ValueError, match='no class names'):
        parse_classes([])
