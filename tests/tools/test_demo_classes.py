"""tools/demo.py: --classes is names only; a class file needs --classes-file (issue 24.1)."""
import pytest
from tf_helpers import load_tool

demo = load_tool('demo')


def test_classes_text_is_names_and_files_need_the_flag(tmp_path, capsys):
    f = tmp_path / 'classes.txt'
    f.write_text('grass, lawn\nsky; heaven\n')
    assert demo.parse_classes('a; b, c') == [['a'], ['b', 'c']]
    assert demo.parse_classes(str(f)) == [[str(f)]]          # a file name given as --classes
    assert '--classes-file' in capsys.readouterr().out        # ... says how to read the file
    assert demo.parse_classes(file=str(f)) == [['grass', 'lawn'], ['sky', 'heaven']]
    args = demo.parse_args(['img.jpg', '--classes-file', str(f)])
    assert args.classes is None and args.classes_file == str(f)
    with pytest.raises(SystemExit, match='--classes-file: class-name file not found'):
        demo.parse_classes(file=str(tmp_path / 'missing.txt'))
    with pytest.raises(SystemExit, match="--classes: .*'sky' is in class 1"):
        demo.parse_classes('sky; sky')
    for argv in (['img.jpg'], ['img.jpg', '--classes', 'a', '--classes-file', str(f)]):
        with pytest.raises(SystemExit):
            demo.parse_args(argv)
