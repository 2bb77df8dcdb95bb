"""tools/index_folder.py: a folder kept in sync with a gallery, incrementally."""
import os
import shutil

import numpy as np
import pytest

from ppshitu.errors import ConfigError

from ppshitu.gallery import layout
from ppshitu.library.folder import FolderState, STATE_FILE, label_for, scan, sync_folder

from library_helpers import cli, make_cfg


def _sync(folder, index, rec, **kw):
    return sync_folder(make_cfg(index), folder, rec=rec, **kw)


def _gallery(index):
    from ppshitu.gallery import Gallery
    return Gallery.open(str(index))


def _items(index):
    return {r["path"]: (r["id"], r["label"]) for r in _gallery(index).records()}


def _touch(path, delta=10):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + delta * 10**9))


def test_labels():
    assert label_for("class_0001/000.jpg") == "class_0001"
    assert label_for("trips/2023/a.jpg") == "trips/2023"
    assert label_for("IMG 0001.jpeg") == "IMG 0001"


def test_add_change_delete_rename_and_unchanged(folder, tmp_path, rec):
    index = tmp_path / "index"
    (folder / "loose photo.jpg").write_bytes((folder / "class_0000" / "000.jpg").read_bytes())
    r = _sync(folder, index, rec)
    assert len(r.added) == 25 and not (r.changed or r.removed) and r.count == 25
    items = _items(index)
    assert items["class_0002/001.jpg"][1] == "class_0002" and items["loose photo.jpg"][1] == "loose photo"

    # unchanged: nothing embedded, nothing written, the same gallery version
    version, state_mtime = layout.current_version(str(index)), os.stat(index / STATE_FILE).st_mtime_ns
    r = _sync(folder, index, rec)
    assert (r.added, r.changed, r.removed, r.unchanged) == ([], [], [], 25)
    assert layout.current_version(str(index)) == version == r.version_after
    assert os.stat(index / STATE_FILE).st_mtime_ns == state_mtime

    # touched (mtime only, same bytes): confirmed by the hash, not re-embedded, gallery untouched
    _touch(folder / "class_0001" / "000.jpg")
    r = _sync(folder, index, rec)
    assert r.touched == ["class_0001/000.jpg"] and not (r.added or r.changed or r.removed)
    assert layout.current_version(str(index)) == version
    r = _sync(folder, index, rec)
    assert not r.touched and r.unchanged == 25

    # add, change (new content), delete, rename: exactly those items move
    before = _items(index)
    (folder / "class_0005" / "new.jpg").write_bytes((folder / "class_0004" / "000.jpg").read_bytes())
    shutil.copyfile(folder / "class_0003" / "000.jpg", folder / "class_0002" / "000.jpg")
    _touch(folder / "class_0002" / "000.jpg")
    os.remove(folder / "class_0004" / "003.jpg")
    os.rename(folder / "class_0001" / "002.jpg", folder / "class_0001" / "renamed.jpg")
    r = _sync(folder, index, rec)
    assert sorted(r.added) == ["class_0001/renamed.jpg", "class_0005/new.jpg"]
    assert r.changed == ["class_0002/000.jpg"]
    assert sorted(r.removed) == ["class_0001/002.jpg", "class_0004/003.jpg"]
    after = _items(index)
    assert len(after) == 25 and r.count == 25
    moved = {"class_0001/002.jpg", "class_0004/003.jpg", "class_0002/000.jpg"}
    assert {p: v for p, v in before.items() if p not in moved} == \
        {p: v for p, v in after.items() if p in before and p not in moved}   # ids of the rest unchanged
    assert after["class_0002/000.jpg"][0] != before["class_0002/000.jpg"][0]
    # the changed file's vector is its new content's: it finds class_0003/000.jpg's twin at cosine 1
    g = _gallery(index)
    vec = rec.predict([__import__("ppshitu.utils.image", fromlist=["read_image"]).read_image(
        str(folder / "class_0003" / "000.jpg"))])
    labels, scores, ids = g.search(vec, 2)
    assert {g.records([int(i)])[0]["path"] for i in ids[0]} == {"class_0003/000.jpg", "class_0002/000.jpg"}
    assert scores[0].min() > 0.999
    # state agrees with the gallery row by row
    st = FolderState(index / STATE_FILE).load()
    assert {p: row.gallery_id for p, row in st.rows.items()} == {p: v[0] for p, v in after.items()}
    version = layout.current_version(str(index))
    assert _sync(folder, index, rec).unchanged == 25 and layout.current_version(str(index)) == version


def test_unreadable_files_are_reported_once_and_skipped(folder, tmp_path, rec):
    index = tmp_path / "index"
    (folder / "class_0000" / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "class_0000" / "empty.png").write_bytes(b"")
    os.symlink(folder / "nowhere.jpg", folder / "class_0000" / "dangling.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.jpg").write_bytes((folder / "class_0000" / "000.jpg").read_bytes())
    r = _sync(folder, index, rec)
    assert r.count == 24
    assert sorted(rel for rel, _ in r.unreadable) == ["class_0000/broken.jpg", "class_0000/dangling.jpg",
                                                      "class_0000/empty.png"]
    version = layout.current_version(str(index))
    r = _sync(folder, index, rec)   # known broken files are not re-tried while unchanged
    assert r.still_unreadable == 2 and [rel for rel, _ in r.unreadable] == ["class_0000/dangling.jpg"]
    assert layout.current_version(str(index)) == version
    shutil.copyfile(folder / "class_0001" / "000.jpg", folder / "class_0000" / "broken.jpg")
    _touch(folder / "class_0000" / "broken.jpg")
    r = _sync(folder, index, rec)   # repaired: indexed now
    assert r.added == ["class_0000/broken.jpg"] and r.count == 25


def test_a_crash_between_gallery_and_state_heals_on_the_next_run(folder, tmp_path, rec, monkeypatch):
    index = tmp_path / "index"
    _sync(folder, index, rec)
    os.remove(folder / "class_0003" / "001.jpg")
    (folder / "class_0003" / "extra.jpg").write_bytes((folder / "class_0005" / "002.jpg").read_bytes())

    def crash(*a, **k):
        raise KeyboardInterrupt("killed")
    monkeypatch.setattr(FolderState, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        _sync(folder, index, rec)       # the gallery was updated, the state was not
    monkeypatch.undo()
    r = _sync(folder, index, rec)
    assert r.healed == ["class_0003/extra.jpg"] and not r.removed and r.count == 24
    assert _sync(folder, index, rec).unchanged == 24
    os.remove(index / STATE_FILE)       # a lost state: refused (it cannot tell what is the folder's) ...
    with pytest.raises(ConfigError, match="without its folder state"):
        _sync(folder, index, rec)
    r = _sync(folder, index, rec, rebuild=True)   # ... until rebuilt
    assert r.created and r.count == 24 and len(_items(index)) == 24


def test_a_crash_during_the_first_run_heals_too(folder, tmp_path, rec, monkeypatch):
    index = tmp_path / "index"
    real_write = FolderState.write

    def write_once(self, rows, meta):
        if rows:
            raise KeyboardInterrupt("killed")
        return real_write(self, rows, meta)
    monkeypatch.setattr(FolderState, "write", write_once)
    with pytest.raises(KeyboardInterrupt):
        _sync(folder, index, rec)
    monkeypatch.undo()
    assert len(_items(index)) == 24     # the gallery holds them, the state only claimed the index
    r = _sync(folder, index, rec)
    assert len(r.healed) == 24 and r.count == 24
    assert _sync(folder, index, rec).unchanged == 24


def test_refuses_a_gallery_it_did_not_make_and_another_folder(folder, tmp_path, rec):
    from ppshitu.library import common

    index = tmp_path / "index"
    cfg = make_cfg(index)
    common.create_store(cfg.IndexProcess, rec.embedding_size, None, np.ones((1, rec.embedding_size), np.float32),
                        ["x"], ["elsewhere/x.jpg"])
    with pytest.raises(ConfigError, match="without its folder state"):
        sync_folder(cfg, folder, rec=rec)
    r = sync_folder(cfg, folder, rec=rec, rebuild=True)
    assert r.created and r.count == 24 and "elsewhere/x.jpg" not in _items(index)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ConfigError, match="holds the folder"):
        sync_folder(cfg, other, rec=rec)


def test_scan_skips_the_index_inside_the_folder(folder, rec):
    index = folder / "index_here"
    r = _sync(folder, index, rec)
    assert r.count == 24
    assert _sync(folder, index, rec).unchanged == 24
    files, _ = scan(folder, exclude=[index])
    assert not [f for f in files if f.startswith("index_here")]


def test_tool_cli(folder, tmp_path, rec, capsys):
    import tools.index_folder as tool

    index = tmp_path / "index"
    tool.main(cli(index) + ["--dir", str(folder), "--list"], rec=rec)
    out = capsys.readouterr().out
    assert "added\tclass_0000/000.jpg" in out and "added=24" in out.splitlines()[-1]
    tool.main(cli(index) + ["--dir", str(folder)], rec=rec)
    assert "unchanged=24" in capsys.readouterr().out
