"""Issue 23, class 1: a user's photo was overwritten. predict_system with Global.infer_imgs=DIR and
Global.output_dir=DIR/sub, where DIR/sub already held upright.jpg and DIR another upright.jpg, drew over
the photo in DIR/sub (exit 0): the "never overwrite an input" check only knew this run's inputs.

Every file ppshitu writes into a folder a user chose now goes through ppshitu.utils.outputs: it writes
only where nothing is, or over a file it wrote itself (recorded, with its size and sha256, in the
folder's .ppshitu-outputs.json), atomically (a temporary file moved into place), and refuses anything
else with an error naming the file (the CLIs: one line, exit 2)."""
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from ppshitu.errors import PPShiTuError

MANIFEST = ".ppshitu-outputs.json"   # ppshitu.utils.outputs.MANIFEST (imported in the tests below that use the guard)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "inference", "inference_general.yaml")
REC_MODEL = os.path.join(ROOT, "models", "demo", "rec")


def _pattern(seed, size=(72, 96)):
    small = np.random.default_rng(seed).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return cv2.resize(small, size[::-1], interpolation=cv2.INTER_NEAREST)


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ predict_system, as the issue ran it
@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """A two-image gallery of the demo recognition model."""
    from ppshitu.config import load_config
    from ppshitu.gallery import Gallery
    from ppshitu.gallery.model_id import model_fingerprint
    from ppshitu.infer.factory import rec_predictor
    from ppshitu.schemas import INFER_SCHEMA

    root = tmp_path_factory.mktemp("outputs_gallery")
    cfg = load_config(CONFIG, [f"Global.rec_inference_model_dir={REC_MODEL}", "Global.det_inference_model_dir=",
                               "Global.cpu_num_threads=1"], INFER_SCHEMA)
    rec = rec_predictor(cfg)
    Gallery.create(root / "g", rec.embedding_size, index_method="Flat", model_fingerprint=model_fingerprint(rec),
                   vectors=rec.predict([_pattern(1), _pattern(2)]), labels=["upright", "other"],
                   paths=["upright.jpg", "other.jpg"])
    return root / "g"


def predict_system(gallery, infer_imgs, output_dir, *extra):
    overrides = [f"Global.rec_inference_model_dir={REC_MODEL}", "Global.det_inference_model_dir=",
                 "Global.cpu_num_threads=1", f"IndexProcess.index_dir={gallery}", f"Global.infer_imgs={infer_imgs}",
                 f"Global.output_dir={output_dir}", *extra]
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict_system.py"), "-c", CONFIG,
                           *[a for o in overrides for a in ("-o", o)]],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_predict_system_never_draws_over_a_photo_already_in_the_output_dir(gallery, tmp_path):
    photos = tmp_path / "DIR"
    (photos / "sub").mkdir(parents=True)
    cv2.imwrite(str(photos / "upright.jpg"), _pattern(1))
    cv2.imwrite(str(photos / "sub" / "upright.jpg"), _pattern(2))   # the user's photo, another picture
    before = _files(photos)
    proc = predict_system(gallery, photos, photos / "sub")
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    err = proc.stderr
    assert f"error: {photos / 'sub' / 'upright.jpg'} already exists and ppshitu did not write it" in err, err[-2000:]
    assert "Traceback" not in err
    assert _files(photos) == before          # the photo's bytes unchanged, and nothing was added


def test_a_rerun_replaces_its_own_drawings_but_not_a_file_put_there_later(gallery, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "upright.jpg"), _pattern(1))
    cv2.imwrite(str(photos / "other.jpg"), _pattern(2))
    out = tmp_path / "out"
    first = predict_system(gallery, photos, out)
    assert first.returncode == 0, first.stderr[-3000:]
    drawn = _files(out)
    assert set(drawn) == {"upright.jpg", "other.jpg", "results.jsonl", MANIFEST}
    record = json.loads(drawn[MANIFEST])["files"]
    assert set(record) == {"upright.jpg", "other.jpg", "results.jsonl"}
    again = predict_system(gallery, photos, out)                       # a re-run: its own files, replaced
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(_files(out)) == set(drawn) and not [p for p in os.listdir(out) if p.endswith(".tmp")]
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [os.path.basename(r["drawn"]) for r in lines] == ["other.jpg", "upright.jpg"]

    cv2.imwrite(str(out / "other.jpg"), _pattern(7))                   # a user's file under a drawing's name
    users = (out / "other.jpg").read_bytes()
    third = predict_system(gallery, photos, out)
    assert third.returncode == 2 and f"{out / 'other.jpg'} already exists and ppshitu did not write it" in \
        third.stderr, third.stderr[-2000:]
    assert (out / "other.jpg").read_bytes() == users
    assert "Traceback" not in third.stderr


def test_output_dir_that_is_an_existing_file_is_one_line_of_error(gallery, tmp_path):
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "a.jpg"), _pattern(1))
    taken = tmp_path / "results"
    taken.write_text("a user's notes")
    proc = predict_system(gallery, tmp_path / "photos", taken)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (f"error: Global.output_dir {taken} is an existing file, not a "
                                                    f"folder; choose a folder for the outputs"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and taken.read_text() == "a user's notes"


# ------------------------------------------------------------------ the guard itself
def test_guard_writes_new_files_and_replaces_only_its_own(tmp_path):
    from ppshitu.utils.outputs import MANIFEST as manifest, OutputError, OutputGuard

    assert manifest == MANIFEST
    with OutputGuard(tmp_path, "out") as g:
        g.write_text(tmp_path / "a.txt", "one")
        g.write_image(tmp_path / "sub" / "b.png", _pattern(3))
        g.write_text(tmp_path / "a.txt", "two")                       # its own, this run
    assert (tmp_path / "a.txt").read_text() == "two"
    record = json.loads((tmp_path / MANIFEST).read_text())["files"]
    assert set(record) == {"a.txt", "sub/b.png"} and record["a.txt"]["size"] == 3
    with OutputGuard(tmp_path, "out") as g:                           # its own, an earlier run
        g.write_text(tmp_path / "a.txt", "three")
    assert (tmp_path / "a.txt").read_text() == "three"
    (tmp_path / "a.txt").write_text("a user's")                        # placed later under the same name
    (tmp_path / "mine.txt").write_text("a user's own")
    with OutputGuard(tmp_path, "out") as g:
        for name in ("a.txt", "mine.txt"):
            with pytest.raises(OutputError, match=f"{tmp_path / name} already exists and ppshitu did not write it"):
                g.write_text(tmp_path / name, "four")
    assert (tmp_path / "a.txt").read_text() == "a user's" and (tmp_path / "mine.txt").read_text() == "a user's own"
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "a.txt", "mine.txt", "sub"]   # no temporaries


def test_guard_refuses_links_fifos_folders_inputs_and_escapes(tmp_path):
    from ppshitu.utils.outputs import OutputError, OutputGuard

    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "precious.jpg"
    target.write_bytes(b"precious")
    os.symlink(target, out / "link.jpg")
    os.mkfifo(out / "fifo.jpg")
    (out / "folder.jpg").mkdir()
    os.symlink(tmp_path, out / "escape")
    g = OutputGuard(out, "Global.output_dir")
    t0 = time.monotonic()
    for name, why in (("link.jpg", "a symbolic link"), ("fifo.jpg", "a FIFO"), ("folder.jpg", "a directory")):
        with pytest.raises(OutputError, match=f"exists and is {why}, not a file ppshitu wrote"):
            g.write_image(out / name, _pattern(1))
    assert time.monotonic() - t0 < 10                                  # the FIFO is never opened
    with pytest.raises(OutputError, match="leads out of Global.output_dir"):
        g.write_text(out / "escape" / "x.txt", "x")
    with pytest.raises(OutputError, match="is an input of this run"):
        OutputGuard(tmp_path, "out", inputs=[target]).write_text(target, "x")
    with pytest.raises(OutputError, match="is not inside"):
        g.write_text(tmp_path / "elsewhere.txt", "x")
    assert target.read_bytes() == b"precious" and not (tmp_path / "x.txt").exists()
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / MANIFEST).write_text("{}")                      # not ppshitu's record
    with pytest.raises(OutputError, match="is not ppshitu's record"):
        OutputGuard(tmp_path / "o2", "out")


def test_guard_writes_atomically(tmp_path):
    from ppshitu.utils.outputs import OutputError, OutputGuard

    with OutputGuard(tmp_path, "out") as g:
        g.write_text(tmp_path / "r.jsonl", "old\n")
        with pytest.raises(RuntimeError):
            with g.open_text(tmp_path / "r.jsonl") as f:
                f.write("half of a new")
                assert (tmp_path / "r.jsonl").read_text() == "old\n"   # nothing visible before the end
                raise RuntimeError("killed")
    assert (tmp_path / "r.jsonl").read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == [MANIFEST, "r.jsonl"]


# ------------------------------------------------------------------ the other writers
def test_save_image_never_overwrites_a_users_file(tmp_path):
    from ppshitu.visualize import save_image

    photo = tmp_path / "holiday.jpg"
    cv2.imwrite(str(photo), _pattern(1))
    before = photo.read_bytes()
    with pytest.raises(PPShiTuError, match="holiday.jpg already exists and ppshitu did not write it"):
        save_image(str(photo), _pattern(2))
    assert photo.read_bytes() == before
    path = save_image(str(tmp_path / "sheet.jpg"), _pattern(2))       # a contact sheet, say: then again
    assert save_image(path, _pattern(3)) == path


def test_duplicates_report_never_overwrites_a_users_file(tmp_path):
    from ppshitu.library.report import write_report

    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), _pattern(1))
    member = {"path": "photo.jpg", "file": str(photo), "keep": True, "same_bytes_as_keep": False,
              "cosine_to_keep": 1.0, "size": 10}
    report = {"items": 2, "groups": [{"kind": "exact", "members": [member, {**member, "keep": False}]}],
              "exact_groups": 1, "near_groups": 0, "duplicates": 1, "rule": {"text": "t"}, "k": 5,
              "keep_rule": "largest"}
    out = tmp_path / "report"
    json_path, html_path = write_report(report, out)                   # then again: its own files
    assert write_report(report, out) == (json_path, html_path)
    assert sorted(os.listdir(out / "thumbs")) == ["000001.jpg", "000002.jpg"]
    with open(html_path, "w", encoding="utf-8") as f:
        f.write("my own notes")                                        # a user's file now
    with pytest.raises(PPShiTuError, match="duplicates.html already exists and ppshitu did not write it"):
        write_report(report, out)
    assert open(html_path, encoding="utf-8").read() == "my own notes"


# ------------------------------------------------------------------ the class, not the probe
# The modules that write into a folder the user chose: every write goes through ppshitu.utils.outputs.
WRITERS = ("ppshitu/visualize.py", "ppshitu/library/report.py", "ppshitu/library/sheet.py", "ppshitu/library/search.py",
           "tools/predict_system.py", "tools/eval_system.py", "tools/search.py", "tools/find_duplicates.py",
           "tools/similarity.py", "tools/demo.py")


def _raw_writes(tree):
    """File writes that do not go through the guard (`guard.write_*`): open() for writing, json.dump to
    a file, PIL's .save(path), cv2.imwrite, np.save, copies, Path.write_text/write_bytes."""
    import ast

    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name.startswith(("guard.", "own.")):
            continue
        mode = list(node.args[1:2]) + [k.value for k in node.keywords if k.arg == "mode"]
        if name in ("open", "io.open", "os.fdopen") and any(
                isinstance(m, ast.Constant) and isinstance(m.value, str) and set(m.value) & set("wax+") for m in mode):
            bad.append((node.lineno, name))
        elif name in ("json.dump", "cv2.imwrite", "np.save", "shutil.copyfile", "shutil.copy", "shutil.copy2") \
                or name.endswith(".write_text") or name.endswith(".write_bytes"):
            bad.append((node.lineno, name))
        elif name.endswith(".save") and node.args and not (isinstance(node.args[0], ast.Name)
                                                           and node.args[0].id == "buf"):
            bad.append((node.lineno, name))
    return bad


def test_every_user_output_is_written_through_the_guard():
    import ast
    import glob

    # the tools' commands, wherever they live (tools/*.py or the ppshitu/commands package)
    commands = [os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "ppshitu", "commands", "*.py"))]
    files = sorted({rel for rel in (*WRITERS, *commands) if os.path.isfile(os.path.join(ROOT, rel))})
    assert "tools/predict_system.py" in files
    bad = [f"{rel}:{line} {name}()" for rel in files
           for line, name in _raw_writes(ast.parse(open(os.path.join(ROOT, rel), encoding="utf-8").read(), rel))]
    assert not bad, f"outputs written without ppshitu.utils.outputs.OutputGuard: {bad}"
    assert _raw_writes(ast.parse("open(p, 'w')\nim.save(path)\njson.dump(x, f)"))      # the rule itself works
