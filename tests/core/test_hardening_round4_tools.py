"""Round 4 of the hardening probes (issue 23's gaps), each refused at its cause as one line (exit 2):

1. convert_ppshitu_index accepted a 30 GB sparse vector.index (a 1 KB index padded with zeros) silently: the
   header (fourcc, d, ntotal) is checked against the memory the import needs before FAISS allocates, the
   file size against the memory it is read into, and bytes after the index the header describes are refused.
2. train into an output folder holding the user's own config.yaml (or one ppshitu wrote and the user edited,
   or the very config this run reads) never writes over it.
"""
import os
import pickle
import shutil
import struct

import numpy as np
import pytest

from test_hardening_round3c_tools import REC_CONFIG, _tiny_rec_overrides, refused, tiny_rec  # noqa: F401


def _index(folder, n=3, d=4):
    import faiss

    folder.mkdir(exist_ok=True)
    index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(d, 32))
    index.add_with_ids(np.eye(n, d, dtype=np.float32) + 0.1, np.arange(n, dtype=np.int64))
    faiss.write_index(index, str(folder / "vector.index"))
    (folder / "id_map.pkl").write_bytes(pickle.dumps({i: f"{i}.jpg\tc{i}" for i in range(n)}))
    return folder / "vector.index"


# 1 -------------------------------------------------------------------------------------------------
def test_a_padded_vector_index_is_refused_naming_the_file(tmp_path, capsys):
    from ppshitu.commands.convert_ppshitu_index import cli

    path = _index(tmp_path / "pad")
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\0" * 100)
    line = refused(cli, [str(tmp_path / "pad"), str(tmp_path / "o1")], capsys, path, "trailing data",
                   f"ends at byte {size}")
    assert "100 bytes" in line and not (tmp_path / "o1").exists()


def test_a_30_gb_sparse_vector_index_is_refused_at_once(tmp_path, capsys, monkeypatch):
    from ppshitu.commands.convert_ppshitu_index import cli
    from ppshitu.gallery import migrate

    path = _index(tmp_path / "sparse")
    os.truncate(path, 30 << 30)  # sparse: no disk used
    for free in (16 << 30, 64 << 30):  # less memory than the file (refused unread), or more (trailing data)
        monkeypatch.setattr(migrate, "_available_memory", lambda: free)
        line = refused(cli, [str(tmp_path / "sparse"), str(tmp_path / "o")], capsys, path, str(30 << 30))
        assert ("more than the 16.0 GiB of memory" if free < 30 << 30 else "trailing data") in line
        assert not (tmp_path / "o").exists()


def test_a_header_claiming_more_vectors_than_memory_is_refused_before_reading(tmp_path, capsys):
    from ppshitu.commands.convert_ppshitu_index import cli

    path = _index(tmp_path / "huge")
    data = bytearray(path.read_bytes())
    struct.pack_into("<q", data, 8, 1 << 40)  # ntotal, after the fourcc and d
    path.write_bytes(bytes(data))
    refused(cli, [str(tmp_path / "huge"), str(tmp_path / "o")], capsys, path, f"{1 << 40} vectors", "memory")
    struct.pack_into("<i", data, 4, 0)  # d = 0
    path.write_bytes(bytes(data))
    refused(cli, [str(tmp_path / "huge"), str(tmp_path / "o")], capsys, path, "0 dimensions")
    path.write_bytes(b"IxM2")
    refused(cli, [str(tmp_path / "huge"), str(tmp_path / "o")], capsys, path, "too short")


def test_an_honest_index_still_imports(tmp_path, capsys):
    from ppshitu.commands.convert_ppshitu_index import cli
    from ppshitu.gallery.gallery import Gallery

    _index(tmp_path / "ok", n=5)
    cli([str(tmp_path / "ok"), str(tmp_path / "g")])
    g = Gallery.open(str(tmp_path / "g"))
    assert len(g) == 5 and sorted(g.labels()) == [f"c{i}" for i in range(5)]


# 2 -------------------------------------------------------------------------------------------------
def test_train_never_writes_over_a_users_config_or_its_own_input_config(tiny_rec, tmp_path, capsys):  # noqa: F811
    from ppshitu.commands.train import cli

    out = tmp_path / "u"
    (out / "RecModel").mkdir(parents=True)
    for where in (out / "config.yaml", out / "RecModel" / "config.yaml"):
        where.write_text("user: mine\n")
    refused(cli, ["-c", REC_CONFIG, *_tiny_rec_overrides(tiny_rec, out)], capsys, out / "RecModel" / "config.yaml")
    assert all(p.read_text() == "user: mine\n" for p in (out / "config.yaml", out / "RecModel" / "config.yaml"))
    # the config a run wrote (recorded as its own), given back as -c into the same folder: an input, never replaced
    run = tmp_path / "run"
    cli(["-c", REC_CONFIG, *_tiny_rec_overrides(tiny_rec, run)])
    said = capsys.readouterr()  # only ppshitu's lines (PaddleClas's logger printed '[date] ppcls WARNING: "init_res"')
    assert "ppcls" not in said.out + said.err and "Logging error" not in said.err, said.err[-2000:]
    own = run / "RecModel" / "config.yaml"
    before = own.read_bytes()
    line = refused(cli, ["-c", str(own), *_tiny_rec_overrides(tiny_rec, run), "-o", "Global.epochs=2"], capsys, own)
    assert "the config (-c) of this run" in line and own.read_bytes() == before


def test_no_output_guard_writes_over_a_loaded_config(tmp_path):
    from ppshitu.config import load_config
    from ppshitu.utils.outputs import OutputError, OutputGuard

    cfg = tmp_path / "out" / "c.yaml"
    cfg.parent.mkdir()
    with OutputGuard(cfg.parent) as guard:
        guard.write_text(cfg, "Global: {}\n")  # adopted as the folder's own output ...
    load_config(str(cfg))                       # ... then read as this run's config: never written again
    with OutputGuard(cfg.parent) as guard, pytest.raises(OutputError, match="config"):
        guard.write_text(cfg, "Global: {x: 1}\n")
    assert cfg.read_text() == "Global: {}\n"


# 3 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("on_disk,listed", [("NFC", "NFD"), ("NFD", "NFC")])
def test_a_name_listed_in_the_other_unicode_form_is_read(tmp_path, on_disk, listed):
    """A list written on macOS spells café.jpg decomposed (NFD), the file on Linux is composed (NFC), or the
    other way: the two look the same, and 'cannot read image café.jpg: No such file or directory' was the
    answer. The image opener reads the name in the other form when the listed one is missing."""
    import unicodedata

    from ppshitu.utils.image import ImageReadError, read_image, read_image_bytes

    import cv2
    name = "caf\u00e9.png"
    disk = tmp_path / unicodedata.normalize(on_disk, name)
    cv2.imwrite(str(disk), np.full((40, 40, 3), 90, np.uint8))
    asked = str(tmp_path / unicodedata.normalize(listed, name))
    assert not os.path.lexists(asked) or os.path.samefile(asked, disk)
    assert read_image_bytes(asked) == disk.read_bytes()
    assert read_image(asked).shape == (40, 40, 3)
    with pytest.raises(ImageReadError, match="No such file"):
        read_image_bytes(str(tmp_path / "caf\u00e8.png"))   # another name: still missing


# 4 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("delimiter", ["''", '"\\n"'])
def test_an_empty_or_multiline_delimiter_is_one_line_naming_the_key(tmp_path, capsys, delimiter):
    """build_gallery -o "IndexProcess.delimiter=''" ended in 'ValueError: empty separator' (a traceback)."""
    from ppshitu.commands.build_gallery import cli

    INFER = os.path.join(os.path.dirname(REC_CONFIG), "..", "inference", "inference_general.yaml")
    (tmp_path / "list.txt").write_text("a.jpg\tcat\n")
    refused(cli, ["-c", INFER, "-o", f"IndexProcess.data_file={tmp_path / 'list.txt'}", "-o",
                  f"IndexProcess.image_root={tmp_path}", "-o", f"IndexProcess.index_dir={tmp_path / 'g'}",
                  "-o", f"IndexProcess.delimiter={delimiter}"], capsys, "IndexProcess.delimiter", "non-empty")
    assert not (tmp_path / "g").exists()


# 5 -------------------------------------------------------------------------------------------------
def test_a_label_longer_than_the_service_allows_is_refused_in_a_gallery_list(tmp_path):
    """A gallery list line whose 'label' was 100,000 (or 10 million) characters was indexed as one class, a
    label the service refuses (MAX_LABEL_CHARS) and no page can show: one limit now, named with the line."""
    from ppshitu.errors import ConfigError
    from ppshitu.gallery.builder import read_data_file
    from ppshitu.serving.service import MAX_LABEL_CHARS as SERVICE_MAX
    from ppshitu.utils.text import MAX_LABEL_CHARS, label_problem

    assert SERVICE_MAX == MAX_LABEL_CHARS
    lst = tmp_path / "list.txt"
    lst.write_text("a.jpg\tcat\nb.jpg\t" + "L" * 100_000 + "\n")
    with pytest.raises(ConfigError, match=rf"list.txt:2: label .*at most {MAX_LABEL_CHARS} characters, got 100000"):
        read_data_file(str(lst))
    assert label_problem("x" * MAX_LABEL_CHARS) is None and label_problem("x" * (MAX_LABEL_CHARS + 1))


# 6 -------------------------------------------------------------------------------------------------
def test_one_file_listed_through_a_link_is_one_item_or_a_conflict(tmp_path, caplog):
    """images/a.jpg and link/a.jpg (link -> images, inside image_root) in one gallery list became two items of
    one file; under two labels, one file had two classes. Files are told apart by (device, inode)."""
    import logging

    from ppshitu.errors import ConfigError
    from ppshitu.gallery.builder import gallery_entries

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"\xff\xd8\xff a")
    (tmp_path / "images" / "b.jpg").write_bytes(b"\xff\xd8\xff b")
    os.symlink("images", tmp_path / "link")
    os.link(tmp_path / "images" / "b.jpg", tmp_path / "hard.jpg")
    lst = tmp_path / "list.txt"
    lst.write_text("images/a.jpg\tx\nlink/a.jpg\tx\nimages/b.jpg\ty\nhard.jpg\ty\nmissing.jpg\tz\n")
    with caplog.at_level(logging.WARNING, logger="ppshitu"):
        keys = [k for k, _, _ in gallery_entries(str(lst), image_root=str(tmp_path))]
    assert keys == ["images/a.jpg", "images/b.jpg", "missing.jpg"]
    assert "'link/a.jpg' (line 2) is 'images/a.jpg'" in caplog.text and "'hard.jpg' (line 4)" in caplog.text
    lst.write_text("images/a.jpg\tx\nlink/a.jpg\ty\n")
    with pytest.raises(ConfigError, match="'link/a.jpg' on .*list.txt:2 is the file 'images/a.jpg'"):
        gallery_entries(str(lst), image_root=str(tmp_path))
    # a remove list takes every spelling (each may be stored)
    assert len(gallery_entries(str(lst), image_root=str(tmp_path), check_labels=False)) == 2


# 7 -------------------------------------------------------------------------------------------------
def test_a_run_killed_before_its_record_was_saved_still_knows_its_outputs(tmp_path):
    """calibrate_gallery SIGKILLed just after writing calibration.json (its record is saved at most once a
    second): the re-run refused its own file as 'ppshitu did not write it', and a folder scan took such a
    drawing for a photo. Each write is announced in the folder's journal before its file is moved into place."""
    import subprocess
    import sys

    from ppshitu.library.folder import scan
    from ppshitu.utils.outputs import JOURNAL, MANIFEST, OutputError, OutputGuard

    out = tmp_path / "out"
    code = ("import os, sys; from ppshitu.utils.outputs import OutputGuard\n"
            "g = OutputGuard(sys.argv[1]); g.write_text(os.path.join(sys.argv[1], 'a.json'), '{}')\n"
            "g.flush(); g.write_bytes(os.path.join(sys.argv[1], 'drawn.jpg'), b'\\xff\\xd8\\xff drawing')\n"
            "os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=os.path.dirname(REC_CONFIG) + "/../..")
    assert proc.returncode == -9 and (out / "drawn.jpg").is_file() and "drawn.jpg" not in (out / MANIFEST).read_text()
    assert "drawn.jpg" not in scan(out)[0]  # not a photo
    (out / "user.jpg").write_bytes(b"\xff\xd8\xff user")
    with OutputGuard(out) as g:
        g.write_bytes(out / "drawn.jpg", b"\xff\xd8\xff drawn again")   # its own: replaced
        with pytest.raises(OutputError, match="did not write it"):
            g.write_bytes(out / "user.jpg", b"x")                       # still never the user's
    assert (out / "drawn.jpg").read_bytes() == b"\xff\xd8\xff drawn again" and not (out / JOURNAL).exists()
    (out / "drawn.jpg").write_bytes(b"\xff\xd8\xff edited by the user")  # then changed: not its own any more
    with OutputGuard(out) as g, pytest.raises(OutputError, match="did not write it"):
        g.write_bytes(out / "drawn.jpg", b"y")


def test_an_append_naming_a_stored_file_through_a_link_adds_nothing(tmp_path):
    """The gallery holds images/a.jpg; an append list names link/a.jpg (link -> images): a second item of the
    same file was added. The append compares new entries with stored items of the same file name by file."""
    from ppshitu.gallery.builder import _stored_as_another_spelling
    from ppshitu.gallery.gallery import Gallery

    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "images" / name).write_bytes(b"\xff\xd8\xff " + name.encode())
    os.symlink("images", tmp_path / "link")
    g = Gallery.create(str(tmp_path / "g"), 3, index_method="Flat", vectors=np.eye(1, 3, dtype=np.float32),
                       labels=["x"], paths=["images/a.jpg"])
    new = [("link/a.jpg", "x", "link/a.jpg"), ("images/b.jpg", "y", "images/b.jpg"), ("gone/a.jpg", "x", "gone/a.jpg")]
    assert _stored_as_another_spelling(g, new, str(tmp_path)) == {"link/a.jpg": ["images/a.jpg"]}
    g.close()
