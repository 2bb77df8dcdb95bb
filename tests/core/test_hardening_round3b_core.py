"""Issue 23, a fresh probe round (3b), fixed by class:

1. Special files given as inputs: `mkfifo f.yaml; tools/similarity.py -c f.yaml a b` hung forever (every tool,
   deploy/serve.py), so did `build_gallery -o IndexProcess.data_file=<fifo>`; `=/dev/zero` read until
   MemoryError; a FIFO given as --scenes or Global.infer_imgs was called "no such file". Every non-image input
   (configs, lists, JSON) now goes through utils/files.py's one opener: regular files only, at most a cap per
   kind of file; a static rule keeps bare open() out of ppshitu's readers.
5. `eval_system --scenes` with a ground-truth bbox [0, 0, -5, NaN] was accepted silently: scene annotations
   now follow det/coco.py's rule (not four numbers: refused; empty, not finite, absurd, outside the image:
   skipped with a warning naming the file, the image and the annotation, and counted as skipped_boxes).
6. The service: uploads orphaned by a kill -9 mid-DELETE stayed forever (POST /api/compact now reclaims
   them, and only them); `--upload-dir <a file>` started with writes enabled, then answered every upload
   500; `--allowed-host ''` was accepted. Now refused at start, one line, exit 2.
7. `tools/demo.py --data D` with D/rec/gallery_list.txt a user's file not in tab format: an IndexError
   traceback. The demo generates only into a new or empty folder, and checks each line it reads.
(2. SIGINT and 8. a file where a folder must be: tests/core/test_hardening_errors.py; 3 and 4, ranges:
tests/core/test_schema_ranges.py.)

Every probe that could hang runs in a child process with a timeout: a regression fails, it does not hang.
"""
import ast
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "inference" / "inference_general.yaml"
REC_MODEL = ROOT / "models" / "demo" / "rec"
TIMEOUT = 120   # s: each probe is refused in well under 20 s (a tool's start-up); a hang is killed here

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
                                reason="needs FIFOs and /dev/zero")


def _env():
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("PPSHITU_TOKEN", None)
    return env


def run_tool(script, *args, timeout=TIMEOUT):
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=_env(), timeout=timeout)


def one_error_line(proc, *names):
    from tests.core.test_hardening_errors import assert_one_error_line
    return assert_one_error_line(proc, *names)


@pytest.fixture()
def specials(tmp_path):
    """A FIFO and a symbolic link to /dev/zero, each under several names."""
    out = {}
    for name in ("f.yaml", "list.txt", "scenes.json"):
        os.mkfifo(tmp_path / name)
        out[("fifo", name)] = tmp_path / name
        os.symlink("/dev/zero", tmp_path / f"zero_{name}")
        out[("zero", name)] = tmp_path / f"zero_{name}"
    return out


# ------------------------------------------------------------------ 1. every reader, in a child process
READERS = {
    # name: (the call, the file name the input gets)
    "config.load_yaml": ("from ppshitu.config import load_yaml as f; f(P)", "f.yaml"),
    "image.list_images": ("from ppshitu.utils.image import list_images as f; f(P)", "list.txt"),
    "builder.read_data_file": ("from ppshitu.gallery.builder import read_data_file as f; f(P)", "list.txt"),
    "builder.read_labels": ("from ppshitu.gallery.builder import read_labels as f; f(P)", "list.txt"),
    "rec.read_list_file": ("from ppshitu.rec.data.dataset import read_list_file as f; f(P)", "list.txt"),
    "system_metrics.load_coco_scenes": ("from ppshitu.evaluation.system_metrics import load_coco_scenes as f; f(P)",
                                        "scenes.json"),
    "det.load_coco": ("from ppshitu.det.coco import load_coco as f; f(P)", "scenes.json"),
    "migrate.read_id_map": ("from ppshitu.gallery.migrate import read_id_map as f; f(P)", "list.txt"),
    "layout.read_json": ("from ppshitu.gallery.layout import read_json as f; f(P)", "scenes.json"),
    "visualize.find_font": ("from ppshitu.visualize import find_font as f; f(P)", "f.yaml"),
    "files.read_input_text": ("from ppshitu.utils.files import read_input_text as f; f(P)", "f.yaml"),
}

CHILD = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    P = {path!r}
    try:
        {call}
        print(json.dumps({{"ok": True}}))
    except BaseException as e:
        print(json.dumps({{"ok": False, "type": type(e).__name__, "message": str(e)}}))
""")


@pytest.mark.parametrize("kind", ["fifo", "zero"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_input_reader_refuses_a_fifo_and_a_device_naming_it(specials, reader, kind):
    call, name = READERS[reader]
    path = specials[(kind, name)]
    proc = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path), call=call)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["ok"], f"{reader} read {path}"
    want = "not a regular file (FIFO)" if kind == "fifo" else "character device"
    assert want in result["message"] and str(path) in result["message"], result
    assert result["type"] not in ("MemoryError", "KeyboardInterrupt"), result


def test_a_file_over_the_cap_is_refused_unread_and_one_that_grows_past_it_while_read(tmp_path):
    from ppshitu.errors import ConfigError
    from ppshitu.utils.files import open_input_text, read_input_bytes, read_input_text

    big = tmp_path / "big.txt"
    big.write_text("x" * 2000)
    with pytest.raises(ConfigError, match=r"list file .*big\.txt: larger than 1000 bytes.*it has 2000 bytes"):
        read_input_text(big, "list file", 1000, ConfigError)
    assert read_input_bytes(big, "list file", 2000) == b"x" * 2000
    growing = tmp_path / "growing.txt"
    growing.write_text("y" * 10)
    with open_input_text(growing, "list file", 100, ConfigError) as f:
        with open(growing, "a") as w:   # a log still being written, say
            w.write("z" * 500)
        with pytest.raises(ConfigError, match="grew past that while read"):
            f.read()


def test_the_caps_are_documented_and_used():
    from ppshitu.utils import files
    doc = files.__doc__
    for name in ("MAX_CONFIG_BYTES", "MAX_LIST_BYTES", "MAX_ANNOTATION_BYTES"):
        assert name in doc and getattr(files, name) >= 64 << 20, name


# ------------------------------------------------------------------ 1. the probes, as a user runs them
@pytest.mark.parametrize("tool,args", [
    ("tools/similarity.py", ("a.jpg", "b.jpg")),
    ("tools/search.py", ("--image", "x.jpg")),
    ("deploy/serve.py", ()),
])
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_fifo_or_a_device_as_the_config_is_one_line(specials, tool, args, kind):
    cfg = specials[(kind, "f.yaml")]
    t0 = time.monotonic()
    proc = run_tool(tool, "-c", cfg, *args)
    line = one_error_line(proc, cfg)
    assert ("FIFO" if kind == "fifo" else "character device") in line, line
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_build_gallery_with_a_fifo_or_a_device_as_data_file_is_one_line(specials, tmp_path, kind):
    data_file = specials[(kind, "list.txt")]
    proc = run_tool("tools/build_gallery.py", "-c", CONFIG, "-o", f"Global.rec_inference_model_dir={REC_MODEL}",
                    "-o", "Global.det_inference_model_dir=", "-o", f"IndexProcess.index_dir={tmp_path / 'index'}",
                    "-o", f"IndexProcess.image_root={tmp_path}", "-o", f"IndexProcess.data_file={data_file}",
                    "-o", "IndexProcess.index_operation=new", "-o", "Global.cpu_num_threads=1")
    line = one_error_line(proc, data_file)
    assert "not a regular file" in line, line


def test_a_fifo_as_infer_imgs_or_scenes_is_called_a_fifo(specials, tmp_path):
    fifo = specials[("fifo", "scenes.json")]
    for proc in (run_tool("tools/predict_system.py", "-c", CONFIG, "-o", f"Global.infer_imgs={fifo}",
                          "-o", f"Global.output_dir={tmp_path / 'out'}"),
                 run_tool("tools/eval_system.py", "-c", CONFIG, "--scenes", fifo)):
        line = one_error_line(proc, fifo)
        assert "not a regular file (FIFO)" in line and "no such" not in line, line


# ------------------------------------------------------------------ 1. the rule: no bare open() for reading
# files opened with the builtin open() for reading, and why that is safe
OPEN_ALLOWED = {
    "ppshitu/utils/cpu.py": "/proc/cpuinfo, a kernel file",
    "ppshitu/serving/routers/page.py": "the package's own static files",
    "ppshitu/utils/outputs.py": "a temporary file it has just written itself",
    "ppshitu/library/dupcalibrate.py": "its own cache file, under ppshitu's cache folder",
}


def _read_opens(path):
    """Line numbers of open(...) / io.open(...) calls whose mode reads (no w, a, x, +)."""
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name not in ("open", "io.open", "codecs.open", "builtins.open"):
            continue
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
        text = mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else "r"
        if not set(text) & set("wax+"):
            lines.append(node.lineno)
    return lines


def test_every_input_file_is_opened_by_the_one_opener():
    """ppshitu reads a file a user can name only through utils/files.py (open_regular / open_input / ...,
    images through utils/image.py's open_image_file, which uses it): a bare open() would block on a FIFO
    and read /dev/zero without end."""
    bad = []
    for path in sorted((ROOT / "ppshitu").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel in OPEN_ALLOWED or rel == "ppshitu/utils/files.py":
            continue
        bad += [f"{rel}:{n}" for n in _read_opens(path)]
    assert not bad, ("open() for reading outside utils/files.py (use open_input / read_input_text / open_regular, "
                     "or add the file to OPEN_ALLOWED saying why it is safe): " + ", ".join(bad))


def test_a_fifo_as_the_folder_state_is_one_line(specials, tmp_path):
    fifo = specials[("fifo", "scenes.json")]
    (tmp_path / "photos").mkdir()
    proc = run_tool("tools/index_folder.py", "-c", CONFIG, "-o", f"Global.rec_inference_model_dir={REC_MODEL}",
                    "-o", "Global.det_inference_model_dir=", "--dir", tmp_path / "photos",
                    "--index", tmp_path / "index", "--state", fifo)
    line = one_error_line(proc, fifo)
    assert "not a regular file (FIFO)" in line, line


# ------------------------------------------------------------------ 5. scene annotations
# `eval_system --scenes bad.json` with a ground-truth bbox [0, 0, -5, NaN] was accepted silently
def _scenes(tmp_path, bboxes, image_ids=None, size=(80, 60)):
    """A scenes json of one 80x60 image and one annotation per bbox (written with NaN allowed, as
    json.dumps writes it)."""
    (tmp_path / "images").mkdir(exist_ok=True)
    cv2.imwrite(str(tmp_path / "images" / "s1.jpg"), np.full((size[1], size[0], 3), 90, np.uint8))
    coco = {"images": [{"id": 1, "file_name": "s1.jpg", "width": size[0], "height": size[1]}],
            "annotations": [{"id": 10 + i, "image_id": (image_ids or {}).get(i, 1), "category_id": 1, "bbox": b,
                             "object_name": "cat"} for i, b in enumerate(bboxes)],
            "categories": [{"id": 1, "name": "object"}]}
    path = tmp_path / "scenes.json"
    path.write_text(json.dumps(coco))
    return path


@pytest.mark.parametrize("bbox,why", [
    ([0, 0, -5, float("nan")], "not finite"),
    ([0, 0, -5, 10], "empty"),
    ([10, 10, 0, 5], "empty"),
    ([200, 200, 10, 10], "outside its 80x60 image"),
    ([0, 0, 1e9, 10], "beyond"),
    ([float("inf"), 0, 5, 5], "not finite"),
])
def test_a_malformed_ground_truth_box_is_skipped_and_counted(tmp_path, caplog, bbox, why):
    from ppshitu.evaluation.system_metrics import load_coco_scenes
    path = _scenes(tmp_path, [[2, 2, 20, 20], bbox])
    counts = {}
    with caplog.at_level("WARNING"):
        scenes = load_coco_scenes(path, counts=counts)
    assert scenes[0][1] == [[2.0, 2.0, 22.0, 22.0]] and counts["skipped_boxes"] == 1
    warning = next(r.getMessage() for r in caplog.records if "skipping box" in r.getMessage())
    assert str(path) in warning and "s1.jpg" in warning and "annotations[1] (id 11)" in warning and why in warning


@pytest.mark.parametrize("bbox", [[0, 0, 5], "0,0,5,5", [0, 0, "5", 5], [0, 0, True, 5], None])
def test_a_bbox_that_is_not_four_numbers_is_refused_naming_the_annotation(tmp_path, bbox):
    from ppshitu.evaluation.system_metrics import ScenesError, load_coco_scenes
    path = _scenes(tmp_path, [[2, 2, 20, 20], bbox])
    with pytest.raises(ScenesError) as e:
        load_coco_scenes(path)
    assert str(path) in str(e.value) and "annotations[1]" in str(e.value) and "bbox" in str(e.value), str(e.value)


def test_an_annotation_of_an_unknown_image_is_refused(tmp_path):
    from ppshitu.evaluation.system_metrics import ScenesError, load_coco_scenes
    path = _scenes(tmp_path, [[2, 2, 20, 20], [3, 3, 5, 5]], image_ids={1: 7})
    with pytest.raises(ScenesError, match=r"annotations\[1\] \(id 11\): image_id 7 is not in images"):
        load_coco_scenes(path)


def test_eval_system_reports_the_skipped_boxes(tmp_path):
    from ppshitu.commands.eval_system import COUNTS
    from ppshitu.evaluation.system_metrics import evaluate_system

    class Nothing:  # a system that finds nothing: every kept ground-truth box is a false negative
        class gallery:
            higher_is_better = True

            @staticmethod
            def labels():
                return ["cat"]

        def predict(self, rgb):
            return []
    path = _scenes(tmp_path, [[2, 2, 20, 20], [0, 0, -5, float("nan")], [1, 1, 0, 0]])
    metrics = evaluate_system(Nothing(), str(path), progress=False)
    assert metrics["skipped_boxes"] == 2 and metrics["fn"] == 1 and metrics["known_objects"] == 1
    assert "skipped_boxes" in COUNTS


# ------------------------------------------------------------------ 6. the service's upload folder and hosts
def _writer(tmp_path):
    """A FAISS gallery (3-d vectors) and the service's writer on it, uploads in tmp_path/index/uploads."""
    from ppshitu.gallery.gallery import Gallery
    from ppshitu.serving.service import GalleryWriter, default_upload_dir
    ip = {"backend": "faiss", "index_dir": str(tmp_path / "index"), "index_method": "Flat"}
    Gallery.create(ip["index_dir"], 3, index_method="Flat", model_fingerprint="standin").close()
    return GalleryWriter(ip, default_upload_dir(ip), "standin")


def _upload(i):
    import hashlib
    data = b"\xff\xd8\xff" + bytes([i]) * 50   # named .jpg by its magic number
    return hashlib.sha256(data).hexdigest(), data


def test_compact_reclaims_uploads_no_item_names_and_nothing_else(tmp_path):
    """kill -9 during DELETE /api/labels/X: the gallery update was published, the files not yet deleted.
    POST /api/compact reclaims them, and never touches a file the service did not store."""
    import hashlib

    from ppshitu.serving.service import RECLAIM_GRACE_S
    w = _writer(tmp_path)
    vectors = np.eye(3, dtype=np.float32)
    _, paths, _ = w.add("cat", [_upload(1), _upload(2)], vectors[:2], [None, None])
    _, kept, _ = w.add("dog", [_upload(3)], vectors[2:], [None])
    w.gallery.remove(labels=["cat"])    # ... and the server is killed before it deletes the cat's files
    assert all(os.path.isfile(p) for p in paths)
    root = Path(w.upload_dir)
    folder = Path(paths[0]).parent
    user_files = [root / "notes.txt", folder / "holiday.jpg", root / "ab" / ("ab" + "0" * 62 + ".jpg")]
    for f in user_files:   # a user's files, one named like an upload but with other content
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"mine")
    temp = folder / ".upload-abcd1234"   # a temporary file of a store killed mid-write
    temp.write_bytes(b"half")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"\xff\xd8\xff" + b"x" * 50)
    sha = hashlib.sha256(outside.read_bytes()).hexdigest()
    (root / sha[:2]).mkdir(exist_ok=True)
    os.symlink(outside, root / sha[:2] / (sha + ".jpg"))   # a link named like an upload: never followed
    old = time.time() - RECLAIM_GRACE_S - 10
    for p in [*paths, temp, *user_files]:
        os.utime(p, (old, old))
    fresh_sha, fresh = _upload(9)   # unreferenced but recent: maybe another server's add in progress
    fresh_path = root / fresh_sha[:2] / (fresh_sha + ".jpg")
    fresh_path.parent.mkdir(exist_ok=True)
    fresh_path.write_bytes(fresh)
    summary = w.compact()
    assert summary["reclaimed_uploads"] == 3, summary  # the cat's two images and the temporary file
    assert not any(os.path.exists(p) for p in paths) and not temp.exists()
    assert all(os.path.isfile(p) for p in kept) and fresh_path.is_file()
    assert all(f.read_bytes() == b"mine" for f in user_files) and outside.is_file()
    assert (root / sha[:2] / (sha + ".jpg")).is_symlink()
    assert w.compact()["reclaimed_uploads"] == 0
    w.gallery.close()


def test_a_reused_upload_is_recent_again(tmp_path):
    w = _writer(tmp_path)
    sha, data = _upload(5)
    path, created = w._store(sha, data)
    old = time.time() - 10_000
    os.utime(path, (old, old))
    assert w._store(sha, data) == (path, False) and time.time() - os.path.getmtime(path) < 60
    w.gallery.close()


def _gallery_config(tmp_path):
    from ppshitu.gallery.gallery import Gallery
    Gallery.create(str(tmp_path / "index"), 3, index_method="Flat", model_fingerprint="standin").close()
    return ["-o", f"IndexProcess.index_dir={tmp_path / 'index'}", "-o", f"Global.rec_inference_model_dir={REC_MODEL}",
            "-o", "Global.det_inference_model_dir="]


def test_serve_refuses_an_upload_dir_that_cannot_hold_uploads(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    opts = _gallery_config(tmp_path)
    for upload_dir, why in ((blocker, "is a file, not a folder"), (blocker / "sub", f"{blocker} is a file")):
        proc = run_tool("deploy/serve.py", "-c", CONFIG, *opts, "--token", "t0k3n", "--upload-dir", upload_dir,
                        "--port", "0")
        line = one_error_line(proc, upload_dir)
        assert why in line and "--upload-dir" in line, line
    assert blocker.read_text() == "not a folder"
    from ppshitu.errors import ConfigError
    from ppshitu.serving.service import check_upload_dir
    check_upload_dir(tmp_path / "new" / "uploads")   # not there yet, but can be made
    with pytest.raises(ConfigError, match="not a folder"):
        check_upload_dir(blocker)


@pytest.mark.parametrize("host", ["", " ", "example.com:8866", "*", "a..b", "-x.example"])
def test_serve_refuses_an_empty_or_invalid_allowed_host(host):
    proc = run_tool("deploy/serve.py", "-c", CONFIG, f"--allowed-host={host}", "--port", "0")
    line = one_error_line(proc, "--allowed-host")
    assert repr(host) in line, line


def test_valid_allowed_hosts_are_accepted():
    from ppshitu.serving.settings import Settings
    s = Settings(host="0.0.0.0", allowed_hosts=("shop.example.com", "192.168.1.5", "[::1]", "::1", "my_host"))
    assert "shop.example.com" in s.allowed_hosts
    with pytest.raises(ValueError, match="allowed_hosts"):
        Settings(allowed_hosts=("",))


# ------------------------------------------------------------------ 7. the demo's --data
# `tools/demo.py --data D` with D/rec/gallery_list.txt a user's file not in tab format: IndexError traceback
def test_demo_refuses_a_gallery_list_it_did_not_write(tmp_path):
    data = tmp_path / "D"
    (data / "rec").mkdir(parents=True)
    (data / "scenes").mkdir()
    (data / "scenes" / "val.json").write_text('{"images": [], "annotations": []}')
    for text, why in (("a.jpg label one\nb.jpg\n", ":1: expected 'relpath<TAB>label name'"),
                      ("a.jpg\tmy cat\n", "lists none of the demo's classes")):
        (data / "rec" / "gallery_list.txt").write_text(text)
        proc = run_tool("tools/demo.py", "--data", data, "--out", tmp_path / "out")
        line = one_error_line(proc, data / "rec" / "gallery_list.txt")
        assert why in line and "--data" in line, line
        assert (data / "rec" / "gallery_list.txt").read_text() == text


def test_demo_never_generates_into_a_folder_of_someone_elses_files(tmp_path):
    data = tmp_path / "D"
    (data / "rec").mkdir(parents=True)
    (data / "rec" / "train_list.txt").write_text("my/own.jpg 1\n")
    proc = run_tool("tools/demo.py", "--data", data, "--out", tmp_path / "out")
    line = one_error_line(proc, data / "rec")
    assert "holds files the demo did not make" in line, line
    assert (data / "rec" / "train_list.txt").read_text() == "my/own.jpg 1\n"
    assert sorted(os.listdir(data / "rec")) == ["train_list.txt"] and not (data / "scenes").exists()
