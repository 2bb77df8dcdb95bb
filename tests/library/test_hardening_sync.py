"""Hardening round 3 (issue 23), classes 3 and 8 in folder syncing and the library tools.

3. A vanished folder (an unmounted drive, a moved folder) must not empty a library: removing more than
   half of the gallery, or all of it, needs --allow-mass-removal (exit 2 and nothing changed otherwise,
   the message naming how many and which); a sub-folder that cannot be read is not "deleted"; a folder
   that does not exist is an error.
8. Every file a scan passes over is counted (GIFs are images like everywhere else), and a file name
   with a newline or a tab stays on its line in every tool that prints one line per file.
"""
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from ppshitu.cli import run_main
from ppshitu.errors import ConfigError, PPShiTuError
from ppshitu.gallery import layout
from ppshitu.library.folder import STATE_FILE, sync_folder

from library_helpers import cli, make_cfg


def _sync(folder, index, rec, **kw):
    return sync_folder(make_cfg(index), folder, rec=rec, **kw)


def _count(index):
    from ppshitu.gallery import Gallery
    return len(Gallery.open(str(index)))


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def _snapshot(index):
    return layout.current_version(str(index)), os.stat(index / STATE_FILE).st_mtime_ns, _count(index)


# ------------------------------------------------------------------ 3. mass removal
def test_an_emptied_folder_is_refused_and_nothing_changes(folder, tmp_path, rec, capsys):
    import tools.index_folder as tool

    index = tmp_path / "index"
    assert _sync(folder, index, rec).count == 24
    before = _snapshot(index)
    moved = tmp_path / "moved"
    shutil.move(str(folder), str(moved))
    folder.mkdir()                                  # the mount point of an unmounted drive: empty
    with pytest.raises(PPShiTuError) as e:
        _sync(folder, index, rec)
    msg = str(e.value)
    assert "24 of the 24" in msg and "class_0000/000.jpg" in msg and "--allow-mass-removal" in msg
    assert _snapshot(index) == before

    with pytest.raises(SystemExit) as e:           # the tool: exit 2, one line, nothing changed
        run_main(lambda: tool.main(cli(index) + ["--dir", str(folder)], rec=rec))
    assert e.value.code == 2 and "--allow-mass-removal" in capsys.readouterr().err
    assert _snapshot(index) == before

    tool.main(cli(index) + ["--dir", str(folder), "--allow-mass-removal"], rec=rec)
    assert "removed=24" in capsys.readouterr().out and _count(index) == 0


def test_more_than_half_needs_the_flag_half_does_not(folder, tmp_path, rec):
    index = tmp_path / "index"
    _sync(folder, index, rec)
    files = _files(folder)
    for rel in files[:12]:                          # exactly half: allowed
        os.remove(folder / rel)
    r = _sync(folder, index, rec)
    assert len(r.removed) == 12 and r.count == 12
    for rel in files[12:19]:                        # 7 of the 12 left: more than half
        os.remove(folder / rel)
    before = _snapshot(index)
    with pytest.raises(PPShiTuError, match=r"7 of the 12 .*more than 50 %"):
        _sync(folder, index, rec)
    assert _snapshot(index) == before
    r = _sync(folder, index, rec, allow_mass_removal=True)
    assert len(r.removed) == 7 and r.count == 5


def test_a_rebuild_of_an_emptied_folder_is_refused_too(folder, tmp_path, rec):
    index = tmp_path / "index"
    _sync(folder, index, rec)
    before = _snapshot(index)
    shutil.rmtree(folder)
    folder.mkdir()
    with pytest.raises(PPShiTuError, match="24 of the 24"):
        _sync(folder, index, rec, rebuild=True)
    assert _snapshot(index) == before


def test_a_missing_folder_is_an_error(tmp_path, rec):
    with pytest.raises(ConfigError, match="no such folder"):
        _sync(tmp_path / "not_mounted", tmp_path / "index", rec)


def test_an_unreadable_sub_folder_is_not_taken_as_deleted(folder, tmp_path, rec, monkeypatch):
    index = tmp_path / "index"
    _sync(folder, index, rec)
    real = os.scandir
    locked = str(folder / "class_0002")

    def scandir(path="."):
        if isinstance(path, (str, os.PathLike)) and os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)
    r = _sync(folder, index, rec)
    assert not r.removed and r.count == 24
    assert ("class_0002", "Permission denied") in [(p, why.split(" (")[0]) for p, why in r.unreadable]


# ------------------------------------------------------------------ 8. skipped files, names on one line
def test_every_skipped_file_is_counted_and_gifs_are_images(folder, tmp_path, rec, capsys):
    import tools.index_folder as tool

    Image.open(folder / "class_0001" / "000.jpg").save(folder / "class_0001" / "anim.gif", "GIF")
    (folder / "class_0001" / "notes.txt").write_text("not an image")
    shutil.copy(folder / "class_0001" / "000.jpg", folder / "class_0001" / ".hidden.jpg")
    (folder / ".thumbs").mkdir()
    shutil.copy(folder / "class_0001" / "000.jpg", folder / ".thumbs" / "a.jpg")
    report = tool.main(cli(tmp_path / "index") + ["--dir", str(folder), "--list"], rec=rec)
    assert "class_0001/anim.gif" in report.added and report.count == 25
    assert sorted(p for p, _ in report.skipped) == [".thumbs", "class_0001/.hidden.jpg", "class_0001/notes.txt"]
    out = capsys.readouterr().out
    assert "skipped=3" in out.splitlines()[-1]
    assert "skipped\tclass_0001/notes.txt\tnot an image file" in out


def test_names_with_newlines_and_tabs_stay_on_one_line(folder, tmp_path, rec, capsys):
    import tools.find_duplicates as dups
    import tools.index_folder as tool
    import tools.search as search

    odd = ["class_0001/new\nline.jpg", "class_0001/tab\there.jpg"]
    for name in odd:
        shutil.copy(folder / "class_0001" / "000.jpg", folder / name)
    index = tmp_path / "index"
    tool.main(cli(index) + ["--dir", str(folder), "--list"], rec=rec)
    lines = capsys.readouterr().out.splitlines()
    added = [line for line in lines if line.startswith("added\t")]
    assert len(added) == 26 and all(len(line.split("\t")) == 2 for line in added)
    assert "added\t'class_0001/new\\nline.jpg'" in added and "added\t'class_0001/tab\\there.jpg'" in added

    hits = search.main(cli(index) + ["--image", str(folder / odd[0]), "--k", "3", "--no-sheet"], rec=rec)
    lines = capsys.readouterr().out.splitlines()
    assert len(hits) == 3 and len(lines) == 3 and all(len(line.split("\t")) == 2 for line in lines)
    assert any(line.endswith("new\\nline.jpg'") for line in lines)

    dups.main(cli(index) + ["--threshold", "0.999", "--out", str(tmp_path / "r")], rec=rec)
    out = capsys.readouterr().out
    assert "new\\nline.jpg" in out and "tab\\there.jpg" in out
    assert not [line for line in out.splitlines() if line.startswith("line.jpg") or line.startswith("here.jpg")]


def test_predict_system_prints_one_line_per_file(folder, tmp_path, rec, capsys, monkeypatch):
    import tools.predict_system as tool
    from library_helpers import CONFIG, overrides

    index = tmp_path / "index"
    _sync(folder, index, rec)
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(folder / "class_0001" / "000.jpg", inputs / "a\nb.jpg")
    shutil.copy(folder / "class_0002" / "000.jpg", inputs / "plain.jpg")
    args = ["predict_system.py", "-c", CONFIG]
    for o in overrides(index) + [f"Global.infer_imgs={inputs}", f"Global.output_dir={tmp_path / 'out'}",
                                 "Global.save_visual=False"]:
        args += ["-o", o]
    monkeypatch.setattr(sys, "argv", args)
    assert tool.main() == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(str(inputs)) or
             line.startswith("'" + str(inputs))]
    assert len(lines) == 2 and any(line.startswith(repr(str(inputs / "a\nb.jpg")) + ":") for line in lines)
    assert np.all([": [" in line for line in lines])
