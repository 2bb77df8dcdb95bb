"""Hardening round 3, second probe round (issue 23): the photo-library tools.

1. ppshitu's own outputs (a duplicates report and its thumbnails, drawings, galleries) are never indexed as
   photos, and a report folder inside --dir is refused.
2. A file name that is not UTF-8 goes through index_folder, search, find_duplicates and predict_system: stored
   as text with its bytes written \\xNN (utils/text.py), its file found again from that, moved and written
   under its own bytes.
3. Every drawn text (contact-sheet captions and titles, labels on drawings) is one printable line: a name with
   a newline no longer breaks every search's sheet.
4. Indexed files that are still there but can no longer be embedded (truncated to 0 bytes, not an image any
   more) count toward the mass-removal guard as removals, as unreadable ones do.
5. `--state` naming a file that is not ppshitu's folder state (a user's SQLite database, any other file) is
   refused before anything is written, the gallery included: ppshitu's states carry a mark.
6, 7. Every numeric flag of the library tools has a declared range (utils/argtypes.py), tried outside for each
   flag of each tool's parser; search's k is also clamped to the gallery's size.
8. Labels (and listed paths) are NFC where they enter: `te\u0301al` and `t\u00e9al` are one class in a gallery
   list, a folder sync and the service.
9. Every skipped list entry is named (the first five, and a count); a path written with backslashes that is
   missing while its '/' spelling exists is said so (on POSIX a backslash is a file-name character).
10. One rule for list files: blank lines and `#` comment lines are left out by every list reader (gallery lists,
   remove lists, image lists, training lists).
11. One set of image extensions (`.jfif`, `.jpe` ... included): folder scans find what list files, search and the
   service read.
12. similarity applies the checks a gallery image gets (through the Embedder): a near-black 16-bit PNG that
   index_folder and the service refuse as flat gets no verdict either.
13. index_folder's counts agree: every unreadable file is listed once, and the summary counts the same ones.
"""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ppshitu.cli import run_main
from ppshitu.errors import ConfigError, PPShiTuError
from ppshitu.library.folder import sync_folder

from library_helpers import cli, make_cfg


def _sync(folder, index, rec, **kw):
    return sync_folder(make_cfg(index), folder, rec=rec, **kw)


# ------------------------------------------------------------------ 1. ppshitu's own outputs are not photos
def test_own_output_folders_are_never_indexed(folder, tmp_path, rec):
    from ppshitu.utils.outputs import OutputGuard

    src = folder / "class_0001" / "000.jpg"
    with OutputGuard(folder / "report", "--out") as guard:      # a duplicates report (thumbnails) in the folder
        guard.write_bytes(folder / "report" / "thumbs" / "000001.jpg", src.read_bytes())
    with OutputGuard(folder, "Global.output_dir") as guard:     # drawings written into the folder itself
        guard.write_bytes(folder / "class_0002" / "drawn.jpg", src.read_bytes())
    _sync(folder / "class_0003", tmp_path / "other", rec)        # another gallery inside the folder
    shutil.move(str(tmp_path / "other"), str(folder / "other_index"))
    r = _sync(folder, tmp_path / "index", rec)
    assert r.count == 24 and not [p for p in r.added if "report" in p or "drawn" in p or "other_index" in p]
    skipped = dict(r.skipped)
    assert "written by ppshitu" in skipped["report/thumbs/000001.jpg"]  # (recorded files; the folder's others: indexed)
    assert "written by ppshitu" in skipped["class_0002/drawn.jpg"] and "ppshitu index" in skipped["other_index"]


def test_a_report_folder_inside_dir_is_refused(folder, tmp_path, rec, capsys):
    import tools.find_duplicates as dups

    for out in (folder / "report", folder):
        with pytest.raises(SystemExit) as e:
            run_main(lambda: dups.main(cli() + ["--dir", str(folder), "--threshold", "0.99", "--out", str(out)],
                                       rec=rec))
        assert e.value.code == 2 and "inside the indexed folder" in capsys.readouterr().err
    assert not (folder / "report").exists()


# ------------------------------------------------------------------ 2. names that are not UTF-8
def _bad(folder, rel):
    return os.fsdecode(os.path.join(os.fsencode(str(folder)), rel))


def test_names_that_are_not_utf8_end_to_end(folder, tmp_path, rec, capsys):
    import tools.find_duplicates as dups
    import tools.index_folder as tool
    import tools.predict_system as predict
    import tools.search as search
    from library_helpers import CONFIG, overrides

    bad = _bad(folder, b"class_0001/bad\xff\xfe.jpg")
    shutil.copy(folder / "class_0001" / "000.jpg", bad)
    os.mkdir(_bad(folder, b"caf\xe9"))
    shutil.copy(folder / "class_0002" / "000.jpg", _bad(folder, b"caf\xe9/x.jpg"))
    shutil.copy(folder / "class_0003" / "000.jpg", folder / "class_0003" / "bad\\xff\\xfe.jpg")  # its key's spelling
    shutil.copy(folder / "class_0003" / "000.jpg", _bad(folder, b"class_0003/bad\xff\xfe.jpg"))   # two files, one key
    index = tmp_path / "index"
    r = tool.main(cli(index) + ["--dir", str(folder), "--list"], rec=rec)
    assert "class_0001/bad\\xff\\xfe.jpg" in r.added and "caf\\xe9/x.jpg" in r.added and r.count == 27
    assert "class_0003/bad\\xff\\xfe.jpg" in r.added and "class_0003/bad\\xff\\xfe.jpg (not UTF-8)" in dict(r.skipped)
    again = tool.main(cli(index) + ["--dir", str(folder)], rec=rec)
    assert again.unchanged == 27 and not (again.added or again.removed or again.changed)
    capsys.readouterr()

    hits = search.main(cli(index) + ["--image", bad, "--k", "3", "--out", str(tmp_path / "sheet.jpg")], rec=rec)
    hit = next(h for h in hits if h["path"] == "class_0001/bad\\xff\\xfe.jpg")
    assert hit["file"] == bad and hit["label"] == "class_0001" and (tmp_path / "sheet.jpg").is_file()

    report = dups.main(cli(index) + ["--threshold", "0.999", "--out", str(tmp_path / "r"),
                                     "--move-to", str(tmp_path / "moved")], rec=rec)
    group = next(g for g in report["groups"] if any(m["path"] == "class_0001/bad\\xff\\xfe.jpg" for m in g["members"]))
    assert len(group["members"]) == 2
    moved = json.loads((tmp_path / "r" / "duplicates.json").read_text(encoding="utf-8"))["moves"]
    assert moved and all(os.path.basename(m["to"]) == os.path.basename(m["from"]) and os.path.exists(m["to"])
                         for m in moved)

    cafe = _bad(folder, b"caf\xe9")
    args = ["-c", CONFIG] + [a for o in overrides(index) + [f"Global.infer_imgs={cafe}",
                                                            f"Global.output_dir={tmp_path / 'out'}"] for a in ("-o", o)]
    assert predict.main(args) == 0
    lines = (tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert [os.fsencode(json.loads(line)["image"]) for line in lines] == [os.fsencode(_bad(folder, b"caf\xe9/x.jpg"))]


# ------------------------------------------------------------------ 3. drawn text is one printable line
def test_drawn_text_with_newlines_and_control_characters(folder, tmp_path, rec, capsys):
    import tools.search as search
    from ppshitu.library.sheet import contact_sheet
    from ppshitu.visualize import draw_results, label_colour

    shutil.copy(folder / "class_0001" / "000.jpg", folder / "new\nline.jpg")   # in the folder itself: label 'new\nline'
    index = tmp_path / "index"
    _sync(folder, index, rec)
    for query in (folder / "class_0001" / "001.jpg", folder / "new\nline.jpg"):
        sheet = tmp_path / f"sheet{len(query.name)}.jpg"
        hits = search.main(cli(index) + ["--image", str(query), "--k", "5", "--out", str(sheet)], rec=rec)
        assert any(h["label"] == "new\nline" for h in hits) and Image.open(sheet).size[0] > 100
    rgb = np.full((64, 64, 3), 200, np.uint8)
    odd = ["a\nb", "tab\there", "esc\x1b[31m", "\u2028x", "bad\udcff"]
    drawn = draw_results(rgb, [{"bbox": [2, 2, 40, 40], "rec_docs": lab, "rec_scores": 0.5} for lab in odd])
    assert drawn.shape == rgb.shape and label_colour("bad\udcff")
    sheet = contact_sheet(rgb, [(rgb, [lab, "x\ny"], lab) for lab in odd], title="t\ni\ntle")
    assert sheet.ndim == 3


# ------------------------------------------------------------------ 4. files there but spoilt are removals too
def _snapshot(index):
    from ppshitu.gallery import Gallery, layout
    from ppshitu.library.folder import STATE_FILE

    return layout.current_version(str(index)), os.stat(index / STATE_FILE).st_mtime_ns, len(Gallery.open(str(index)))


def test_files_truncated_to_nothing_are_not_silently_removed(folder, tmp_path, rec, capsys):
    import tools.index_folder as tool

    index = tmp_path / "index"
    assert _sync(folder, index, rec).count == 24
    before = _snapshot(index)
    files = sorted(p for p in folder.rglob("*.jpg"))
    for p in files[:14]:                        # a failed sync: 0 bytes (cloud placeholders) ...
        p.write_bytes(b"")
    for p in files[14:]:                        # ... and damaged
        p.write_bytes(b"not a jpeg at all")
    with pytest.raises(PPShiTuError) as e:
        _sync(folder, index, rec)
    assert "24 of the 24" in str(e.value) and "no longer be read as images" in str(e.value)
    assert _snapshot(index) == before
    with pytest.raises(SystemExit) as e:
        run_main(lambda: tool.main(cli(index) + ["--dir", str(folder)], rec=rec))
    assert e.value.code == 2 and "--allow-mass-removal" in capsys.readouterr().err and _snapshot(index) == before
    r = _sync(folder, index, rec, allow_mass_removal=True)
    assert r.count == 0 and len(r.removed) == 24


def test_a_rebuild_of_spoilt_files_is_refused_too(folder, tmp_path, rec):
    index = tmp_path / "index"
    _sync(folder, index, rec)
    before = _snapshot(index)
    for p in folder.rglob("*.jpg"):
        p.write_bytes(b"")
    with pytest.raises(PPShiTuError, match="24 of the 24"):
        _sync(folder, index, rec, rebuild=True)
    assert _snapshot(index) == before


# ------------------------------------------------------------------ 13. one count of unreadable files
def test_unreadable_counts_agree(folder, tmp_path, rec, capfd):
    import tools.index_folder as tool

    c = folder / "class_0001"
    (c / "empty.jpg").write_bytes(b"")
    (c / "text.jpg").write_bytes(b"hello")
    Image.new("RGB", (4, 4)).save(c / "tiny.png")
    Image.new("RGB", (64, 64), (7, 7, 7)).save(c / "flat.png")
    os.symlink(c / "gone.jpg", c / "broken.jpg")
    os.mkfifo(c / "pipe.jpg")
    report = tool.main(cli(tmp_path / "index") + ["--dir", str(folder)], rec=rec)
    err = capfd.readouterr()
    listed = [line for line in err.err.splitlines() if line.startswith("unreadable\t")]
    assert len(report.unreadable) == len(listed) == 6 and "unreadable=6" in err.out
    assert "could not be read" not in err.err                   # no other count of another set of files
    assert not [line for line in listed if "see the warning" in line]   # each says why


# ------------------------------------------------------------------ 5. --state never takes a user's file
def test_state_that_is_not_ppshitus_is_refused_before_anything_is_written(folder, tmp_path, rec, capsys):
    import sqlite3

    import tools.index_folder as tool
    from ppshitu.library.folder import APPLICATION_ID, STATE_FILE

    user = tmp_path / "user.sqlite"
    with sqlite3.connect(user) as con:
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        con.execute("INSERT INTO meta VALUES ('mine', 'precious')")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    index = tmp_path / "index"
    for state in (user, notes, notes):                        # (a retry changes nothing either)
        with pytest.raises(SystemExit) as e:
            run_main(lambda: tool.main(cli(index) + ["--dir", str(folder), "--state", str(state)], rec=rec))
        err = capsys.readouterr().err
        assert e.value.code == 2 and "not a ppshitu folder state" in err and len(err.strip().splitlines()) == 1
        assert not index.exists()                            # no gallery published
    with sqlite3.connect(user) as con:
        assert list(con.execute("SELECT * FROM meta")) == [("mine", "precious")]
    assert notes.read_text() == "my notes\n"

    own = tmp_path / "own.sqlite"                             # ppshitu's own state: marked, used again
    assert tool.main(cli(index) + ["--dir", str(folder), "--state", str(own)], rec=rec).count == 24
    with sqlite3.connect(own) as con:
        assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        con.execute("PRAGMA application_id = 0")              # a state written before the mark still works
    (folder / "class_0001" / "000.jpg").unlink()
    assert tool.main(cli(index) + ["--dir", str(folder), "--state", str(own)], rec=rec).removed == ["class_0001/000.jpg"]
    with sqlite3.connect(own) as con:
        assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert not (index / STATE_FILE).exists()


# ------------------------------------------------------------------ 6, 7. numeric flags: declared ranges
LIBRARY_TOOLS = ("search", "similarity", "find_duplicates", "index_folder", "calibrate_gallery", "gallery_doctor")


def _minimal_args(parser):
    """The arguments a parser requires, filled with text (no numeric flag is required)."""
    args = []
    for a in parser._actions:
        if not a.option_strings and a.nargs is None:
            args.append("x")
        elif a.required:
            args += [a.option_strings[0], "x"]
    for group in parser._mutually_exclusive_groups:  # one of them required (search: --image or --text)
        if group.required:
            args += [group._group_actions[0].option_strings[0], "x"]
    return args


def test_every_numeric_flag_of_the_library_tools_has_a_range(capsys):
    import importlib

    from ppshitu.utils.argtypes import Bounded

    tried = 0
    for name in LIBRARY_TOOLS:
        parser = importlib.import_module(f"ppshitu.commands.{name}").parser()
        assert getattr(parser, "checks_ranges", False), f"{name}: parser() must return argtypes.ranged(p)"
        for action in parser._actions:
            assert action.type not in (int, float), f"{name} {action.option_strings}: a number without a range"
            if not isinstance(action.type, Bounded):
                continue
            flag = action.option_strings[-1]
            assert action.default is None or action.type.contains(action.default), (name, flag)
            for bad in action.type.outside():
                try:                               # (--k=-1: a value, not an option)
                    parser.parse_args(_minimal_args(parser) + [f"{flag}={bad}"])
                except ConfigError as e:           # a number outside: one line naming the flag (run_main)
                    assert str(e).startswith(f"{flag} must be "), (name, flag, bad, str(e))
                except SystemExit as e:            # no number at all: argparse's error
                    assert e.code == 2 and f"argument {flag}: must be" in capsys.readouterr().err, (name, flag, bad)
                else:
                    pytest.fail(f"{name} {flag}={bad!r} accepted")
                tried += 1
    assert tried > 100


def test_absurd_k_and_thresholds_are_refused_and_k_is_clamped(folder, tmp_path, rec, capsys):
    import tools.find_duplicates as dups
    import tools.search as search

    index = tmp_path / "index"
    _sync(folder / "class_0001", index, rec)                     # 4 images
    for k in ("1000000000", "99999999999999999999", "0"):
        with pytest.raises(SystemExit) as e:
            run_main(lambda: search.main(cli(index) + ["--image", str(folder / "class_0001" / "000.jpg"), "--k", k],
                                         rec=rec))
        assert e.value.code == 2 and "--k must be an integer from 1 to 1000" in capsys.readouterr().err
    hits = search.main(cli(index) + ["--image", str(folder / "class_0001" / "000.jpg"), "--k", "1000",
                                     "--out", str(tmp_path / "s.jpg")], rec=rec)
    assert len(hits) == 4 and Image.open(tmp_path / "s.jpg").size[1] < 1000
    for flag, value in (("--k", "1000000000"), ("--threshold", "nan"), ("--threshold", "inf"), ("--threshold", "2"),
                        ("--threshold", "-1"), ("--threshold", "0")):
        with pytest.raises(SystemExit) as e:
            run_main(lambda: dups.main(cli(index) + [f"{flag}={value}", "--out", str(tmp_path / "r")], rec=rec))
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"{flag} must be" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ 12. similarity: the gallery's checks
def test_similarity_refuses_what_the_gallery_refuses(folder, tmp_path, rec, capsys):
    import cv2

    import tools.similarity as tool
    from ppshitu.embedder import Embedder

    dark = (np.random.default_rng(0).integers(0, 200, (64, 64, 3))).astype(np.uint16)   # 16-bit, near black
    path = tmp_path / "dark16.png"
    cv2.imwrite(str(path), dark)
    r = _sync(tmp_path, tmp_path / "index", rec)
    assert dict(r.unreadable).get("dark16.png", "").find("no detail") >= 0            # index_folder: refused
    from ppshitu.utils.image import read_image
    served = Embedder.from_config(make_cfg(), rec).embed_images([("upload", read_image(path))])
    assert "no detail" in served.refused[0]                                            # the service: refused
    with pytest.raises(SystemExit) as e:
        run_main(lambda: tool.main(cli() + [str(path), str(folder / "class_0001" / "000.jpg")], rec=rec))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no detail" in err and "dark16.png" in err
    out = tool.main(cli() + [str(folder / "class_0001" / "000.jpg"), str(folder / "class_0001" / "001.jpg")], rec=rec)
    assert out["cosine"] > 0


# ------------------------------------------------------------------ 8. one spelling per label
def test_labels_and_listed_paths_are_nfc(folder, tmp_path, rec):
    from ppshitu.gallery import Gallery
    from ppshitu.gallery.builder import build_gallery
    from ppshitu.serving.service import check_label

    nfd, nfc = "te\u0301al", "t\u00e9al"
    shutil.copy(folder / "class_0001" / "000.jpg", folder / f"{nfd}.jpg")      # on disk: the decomposed name
    lst = tmp_path / "list.txt"
    lst.write_text(f"{nfd}.jpg\t{nfd}\n{nfc}.jpg\t{nfc}\nclass_0002/000.jpg\t{nfc}\n", encoding="utf-8")
    index = tmp_path / "g"
    cfg = make_cfg(index, **{"IndexProcess.image_root": folder, "IndexProcess.data_file": lst,
                             "IndexProcess.index_operation": "new"})
    summary = build_gallery(cfg, rec=rec)
    g = Gallery.open(str(index))
    assert summary["added"] == 2 and summary["unreadable"] == 0 and g.labels() == [nfc]
    assert sorted(r["path"] for r in g.records()) == ["class_0002/000.jpg", f"{nfc}.jpg"]
    lst.write_text(f"{nfc}.jpg\t{nfd}\n", encoding="utf-8")                    # appended again in the other form
    cfg["IndexProcess"]["index_operation"] = "append"
    assert build_gallery(cfg, rec=rec)["already_present"] == 1

    for name in (nfd, nfc):                                                     # two folders, one class
        os.makedirs(tmp_path / "pics" / name)
        shutil.copy(folder / "class_0003" / "000.jpg", tmp_path / "pics" / name / "a.jpg")
    _sync(tmp_path / "pics", tmp_path / "index", rec)
    assert Gallery.open(str(tmp_path / "index")).labels() == [nfc]
    assert check_label(f" {nfd} ") == nfc                                       # POST /api/items, rename


# ------------------------------------------------------------------ 9. skipped entries named; backslashes
def test_every_skipped_list_entry_is_named_and_backslashes_explained(folder, tmp_path, rec, caplog):
    from ppshitu.gallery.builder import build_gallery

    lines = ["images\\class_0001\\000.jpg\tone", "images/class_0002/000.jpg\ttwo"]
    lines += [f"images/gone_{i}.jpg\tgone" for i in range(6)]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copytree(folder, tmp_path / "root" / "images")
    cfg = make_cfg(tmp_path / "g", **{"IndexProcess.image_root": tmp_path / "root", "IndexProcess.data_file": lst,
                                      "IndexProcess.index_operation": "new"})
    with caplog.at_level("WARNING"):
        summary = build_gallery(cfg, rec=rec)
    assert summary["added"] == 1 and summary["unreadable"] == 7
    last = [r.getMessage() for r in caplog.records][-1]
    assert last.startswith("7 of 8 images could not be read and were skipped: ") and last.endswith("; and 2 more")
    assert "images\\class_0001\\000.jpg" in last and "a backslash is part of a file name here" in last
    assert "images/class_0001/000.jpg exists" in last and "gone_0.jpg" in last


# ------------------------------------------------------------------ 10. one rule for list files
def test_comments_and_blank_lines_in_every_list_reader(folder, tmp_path):
    from ppshitu.gallery.builder import read_data_file, read_labels
    from ppshitu.rec.data.dataset import read_list_file
    from ppshitu.utils.image import list_images

    shutil.copy(folder / "class_0001" / "000.jpg", folder / "#hash.jpg")
    head = "\ufeff# made by hand\n\n   # an indented comment\r\n"
    (folder / "g.txt").write_text(head + "class_0001/000.jpg\tone\n./#hash.jpg\ttwo\n", encoding="utf-8")
    assert read_data_file(folder / "g.txt") == [("class_0001/000.jpg", "one"), ("./#hash.jpg", "two")]
    (folder / "labels.txt").write_text(head + "one\n\ttwo\n", encoding="utf-8")
    assert read_labels(folder / "labels.txt") == ["one", "two"]
    (folder / "q.txt").write_text(head + "class_0001/000.jpg\n./#hash.jpg\n", encoding="utf-8")
    assert list_images(folder / "q.txt") == [str(folder / "class_0001" / "000.jpg"), str(folder / "#hash.jpg")]
    (folder / "train.txt").write_text(head + "class_0001/000.jpg 1\n", encoding="utf-8")
    assert read_list_file(str(folder / "train.txt")) == [("class_0001/000.jpg", 1, None)]


# ------------------------------------------------------------------ 11. one set of image extensions
def test_every_image_extension_is_scanned_listed_and_read(folder, tmp_path, rec):
    from ppshitu.utils.image import IMAGE_EXTENSIONS, list_images, read_image

    assert {".jfif", ".jpe", ".gif"} <= set(IMAGE_EXTENSIONS)
    src = Image.open(folder / "class_0001" / "000.jpg")
    formats = {".jpe": "JPEG", ".jfif": "JPEG", ".dib": "BMP", ".pbm": "PPM", ".pgm": "PPM", ".pnm": "PPM"}
    pics = tmp_path / "pics"
    pics.mkdir()
    for ext in IMAGE_EXTENSIONS:
        im = src.convert("L") if ext == ".pgm" else src.convert("1") if ext == ".pbm" else src
        im.save(pics / f"x{ext[1:]}{ext.upper() if ext == '.jfif' else ext}", format=formats.get(ext))
    names = sorted(os.listdir(pics))
    assert [os.path.basename(p) for p in list_images(pics)] == names
    assert all(read_image(pics / n).shape[2] == 3 for n in names)
    r = _sync(pics, tmp_path / "index", rec)
    assert sorted(r.added) == names and not r.skipped and not r.unreadable
