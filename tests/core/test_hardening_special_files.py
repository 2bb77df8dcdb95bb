"""Issue 23, class 2: special files among the images. A FIFO named p.jpg hung predict_system and
index_folder forever; a symbolic link z.jpg -> /dev/zero was read without limit (4.27 GB resident,
then a warning with an empty reason). Every image file is now opened by utils.image's one opener:
regular files only (a symbolic link to one is fine), at most a byte limit derived from
Global.max_image_pixels; the scans skip the others with a warning that names the file and why.

Every run that could hang or grow runs in a subprocess with a timeout and a watched resident size:
a regression fails, it does not hang the suite or eat the machine's memory."""
import os
import subprocess
import sys
import textwrap
import threading
import time

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "inference", "inference_general.yaml")
BUILD_CONFIG = os.path.join(ROOT, "configs", "inference", "build_gallery.yaml")
REC_MODEL = os.path.join(ROOT, "models", "demo", "rec")
TIMEOUT = 120          # s: a run of these tools on three tiny files takes a few seconds
MAX_RSS_MB = 2500      # a tool with the demo model stays far below; reading /dev/zero passes it in a second

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
                                reason="needs FIFOs and /dev/zero")


def _rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def run_bounded(args, timeout=TIMEOUT, max_rss_mb=MAX_RSS_MB, **kwargs):
    """subprocess.run with a timeout and a resident-size ceiling (the process is killed past either);
    returns (CompletedProcess, seconds, peak resident MB, why it was killed or None)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, **kwargs)
    peak, killed = [0.0], [None]

    def watch():
        while proc.poll() is None:
            rss = _rss_mb(proc.pid)
            peak[0] = max(peak[0], rss)
            if rss > max_rss_mb:
                killed[0] = f"resident size {rss:.0f} MB > {max_rss_mb} MB"
                proc.kill()
                return
            if time.monotonic() - t0 > timeout:
                killed[0] = f"still running after {timeout} s"
                proc.kill()
                return
            time.sleep(0.02)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    return subprocess.CompletedProcess(args, proc.returncode, out, err), time.monotonic() - t0, peak[0], killed[0]


def _pattern(seed, size=(72, 96)):
    small = np.random.default_rng(seed).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return cv2.resize(small, size[::-1], interpolation=cv2.INTER_NEAREST)


def _special_folder(folder):
    """good.jpg, p.jpg (a FIFO) and z.jpg -> /dev/zero in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "good.jpg"), _pattern(1))
    os.mkfifo(folder / "p.jpg")
    os.symlink("/dev/zero", folder / "z.jpg")
    return folder


def _assert_named(text):
    """Both special files named with their reason (never an empty one)."""
    lines = text.splitlines()
    fifo = [line for line in lines if "p.jpg" in line and "not a regular file (FIFO)" in line]
    zero = [line for line in lines if "z.jpg" in line
            and "not a regular file (symbolic link to a character device)" in line]
    assert fifo and zero, text[-3000:]


# ------------------------------------------------------------------ the opener itself
OPENER_PROBE = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from ppshitu.utils.image import ImageReadError, read_image
    from ppshitu.library.folder import sha256_file
    from ppshitu.library.duplicates import phash_file
    for name in ("p.jpg", "z.jpg", "sub"):
        path = sys.argv[2] + "/" + name
        for what, call in (("read_image", read_image), ("sha256_file", sha256_file)):
            try:
                call(path)
                print(what, name, "READ")
            except ImageReadError as e:
                print(what, name, "refused:", e)
            except Exception as e:
                print(what, name, "other", type(e).__name__, repr(str(e)))
        print("phash_file", name, phash_file(path))
""")


def test_read_image_hash_and_phash_refuse_a_fifo_a_device_and_a_directory_at_once(tmp_path):
    folder = _special_folder(tmp_path / "photos")
    (folder / "sub").mkdir()
    (tmp_path / "probe.py").write_text(OPENER_PROBE)
    proc, seconds, peak, killed = run_bounded([sys.executable, str(tmp_path / "probe.py"), ROOT, str(folder)],
                                              timeout=60, max_rss_mb=1500)
    assert killed is None, (killed, proc.stdout[-2000:], proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for what in ("read_image", "sha256_file"):
        assert f"{what} p.jpg refused: cannot read image {folder}/p.jpg: not a regular file (FIFO)" in out, out
        assert (f"{what} z.jpg refused: cannot read image {folder}/z.jpg: not a regular file (symbolic link to a "
                f"character device)") in out, out
        assert f"{what} sub refused: cannot read image {folder}/sub: not a regular file (directory)" in out, out
    assert out.count("phash_file") == 3 and "phash_file p.jpg None" in out and "phash_file z.jpg None" in out
    assert peak < 1500 and seconds < 60


def test_a_symlink_to_a_regular_image_is_read(tmp_path):
    from ppshitu.utils.image import read_image

    cv2.imwrite(str(tmp_path / "real.jpg"), _pattern(2))
    os.symlink(tmp_path / "real.jpg", tmp_path / "link.jpg")
    assert read_image(tmp_path / "link.jpg").shape == (72, 96, 3)


def test_a_file_past_the_byte_limit_is_refused_unread(tmp_path, monkeypatch):
    from ppshitu.library.folder import sha256_file
    from ppshitu.utils.image import (IMAGE_BYTES_SLACK, ImageFileTooLargeError, ImageTooLargeError,
                                     max_image_bytes, read_image, read_image_bytes, set_max_image_pixels)

    assert max_image_bytes(1000) == 8 * 1000 + IMAGE_BYTES_SLACK
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:  # sparse: 100 MB that take no disk and would take 100 MB of memory to read
        f.truncate(100 << 20)
    reads = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: reads.append(p) or real_open(p, *a, **k))
    t0 = time.monotonic()
    with pytest.raises(ImageFileTooLargeError) as e:
        read_image(big, max_pixels=1000)
    assert time.monotonic() - t0 < 1 and not [p for p in reads if str(p) == str(big)]  # refused by stat: not opened
    assert isinstance(e.value, ImageTooLargeError)
    msg = str(e.value)
    assert str(big) in msg and f"larger than {max_image_bytes(1000)} bytes" in msg
    assert "limit from Global.max_image_pixels" in msg and "it has 104857600 bytes" in msg
    set_max_image_pixels(1000)
    try:
        with pytest.raises(ImageFileTooLargeError):
            sha256_file(big)               # the folder scan's content hashing keeps to the same limit
    finally:
        set_max_image_pixels(None)
    small = tmp_path / "small.jpg"
    small.write_bytes(b"x" * 2000)
    with pytest.raises(ImageFileTooLargeError):
        read_image_bytes(small, max_bytes=1999)
    assert len(read_image_bytes(small, max_bytes=2000)) == 2000


# ------------------------------------------------------------------ the tools on a folder with special files
@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """A one-image gallery of the demo recognition model (predict_system needs one)."""
    from ppshitu.config import load_config
    from ppshitu.gallery import Gallery
    from ppshitu.gallery.model_id import model_fingerprint
    from ppshitu.infer.factory import rec_predictor
    from ppshitu.schemas import INFER_SCHEMA

    root = tmp_path_factory.mktemp("special_gallery")
    cfg = load_config(CONFIG, [f"Global.rec_inference_model_dir={REC_MODEL}", "Global.det_inference_model_dir=",
                               "Global.cpu_num_threads=1"], INFER_SCHEMA)
    rec = rec_predictor(cfg)
    Gallery.create(root / "g", rec.embedding_size, index_method="Flat", model_fingerprint=model_fingerprint(rec),
                   vectors=rec.predict([_pattern(1)]), labels=["good"], paths=["good.jpg"])
    return root / "g"


def _tool(name, *args, config=CONFIG, overrides=()):
    base = [f"Global.rec_inference_model_dir={REC_MODEL}", "Global.det_inference_model_dir=",
            "Global.cpu_num_threads=1", *overrides]
    return [sys.executable, os.path.join(ROOT, "tools", name), "-c", config,
            *[a for o in base for a in ("-o", o)], *args]


def _bounded_ok(cmd):
    proc, seconds, peak, killed = run_bounded(cmd)
    assert killed is None, (killed, proc.stdout[-2000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_predict_system_skips_a_fifo_and_a_dev_zero_link_in_its_folder(gallery, tmp_path):
    folder = _special_folder(tmp_path / "photos")
    proc = _bounded_ok(_tool("predict_system.py", overrides=[f"IndexProcess.index_dir={gallery}",
                                                              f"Global.infer_imgs={folder}",
                                                              f"Global.output_dir={tmp_path / 'out'}"]))
    assert "1 images recognised, 2 skipped" in proc.stdout, proc.stdout[-2000:]
    _assert_named(proc.stderr)
    assert "'rec_docs': 'good'" in proc.stdout
    assert sorted(os.listdir(tmp_path / "out")) == [".ppshitu-outputs.json", "good.jpg", "results.jsonl"]


def test_index_folder_skips_a_fifo_and_a_dev_zero_link_and_says_why(tmp_path):
    folder = _special_folder(tmp_path / "photos")
    proc = _bounded_ok(_tool("index_folder.py", "--dir", str(folder), "--index", str(tmp_path / "index")))
    assert "added=1 " in proc.stdout and "unreadable=2 " in proc.stdout, proc.stdout[-2000:]
    assert "unreadable\tp.jpg\tnot a regular file (FIFO)" in proc.stderr, proc.stderr[-3000:]
    assert "unreadable\tz.jpg\tnot a regular file (symbolic link to a character device)" in proc.stderr
    assert "unreadable\tp.jpg\t\n" not in proc.stderr and "unreadable\tz.jpg\t\n" not in proc.stderr
    # a second run: still quick, still skipped (known unreadable, not re-tried), nothing written
    proc = _bounded_ok(_tool("index_folder.py", "--dir", str(folder), "--index", str(tmp_path / "index")))
    assert "added=0 " in proc.stdout and "unchanged=1 " in proc.stdout, proc.stdout[-2000:]


def test_build_gallery_skips_a_fifo_and_a_dev_zero_link_it_is_given(tmp_path):
    folder = _special_folder(tmp_path / "photos")
    data = tmp_path / "gallery.txt"
    data.write_text("good.jpg\tgood\np.jpg\tpipe\nz.jpg\tzero\n")
    proc = _bounded_ok(_tool("build_gallery.py", config=BUILD_CONFIG,
                             overrides=[f"IndexProcess.index_dir={tmp_path / 'g'}", f"IndexProcess.image_root={folder}",
                                        f"IndexProcess.data_file={data}"]))
    assert "added=1 " in proc.stdout and "unreadable=2 " in proc.stdout, proc.stdout[-2000:]
    _assert_named(proc.stderr)


# ------------------------------------------------------------------ the class, not the probe
def _raw_image_reads(tree):
    """Calls that open an image file behind utils.image's back: cv2.imread, np.fromfile, and
    PIL's Image.open of anything but in-memory bytes (io.BytesIO(...))."""
    import ast

    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name in ("cv2.imread", "cv2.imreadmulti", "np.fromfile", "numpy.fromfile"):
            bad.append((node.lineno, name))
        elif name in ("Image.open", "PIL.Image.open") and not (
                node.args and isinstance(node.args[0], ast.Call)
                and ast.unparse(node.args[0].func).endswith("BytesIO")):
            bad.append((node.lineno, name))
    return bad


def test_every_image_file_is_read_through_the_one_opener():
    import ast
    import pathlib

    sources = [p for d in ("ppshitu", "tools") for p in (pathlib.Path(ROOT) / d).rglob("*.py")]
    bad = [f"{p.relative_to(ROOT)}:{line} {name}()" for p in sources
           for line, name in _raw_image_reads(ast.parse(p.read_text(), str(p)))]
    assert not bad, f"image files read without ppshitu.utils.image.open_image_file: {bad}"
    assert _raw_image_reads(ast.parse("from PIL import Image\nImage.open(path)"))       # the rule itself works
    assert not _raw_image_reads(ast.parse("Image.open(io.BytesIO(read_image_bytes(path)))"))
