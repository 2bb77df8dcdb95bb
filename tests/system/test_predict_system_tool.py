"""tools/predict_system.py as a user runs it: PaddleClas's own deploy config, unchanged but for
paths (it writes `scale: 1.0/255.0`), a pre-3.0 format model without inference.yml (like
PP-ShiTu's published models), no detector (the whole image is the query), an image / a
directory / a list file; JSON lines and drawn images come out. Also: the query path never
imports paddleclas or ppdet."""
import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PADDLECLAS_CONFIG = os.path.join(ROOT, ".venv/lib/python3.11/site-packages/paddleclas/deploy/configs/"
                                       "inference_general.yaml")
# conv/pool/flatten/linear trace in the legacy (pre-3.0) format; any input size, like real models
LEGACY_NET = textwrap.dedent("""
    import sys, paddle
    class Tiny(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 16, 5, stride=4)
            self.pool = paddle.nn.AdaptiveAvgPool2D(2)
            self.fc = paddle.nn.Linear(64, 32)
        def forward(self, x):
            return self.fc(paddle.flatten(self.pool(paddle.nn.functional.relu(self.conv(x))), 1))
    paddle.seed(1)
    net = Tiny()
    net.eval()
    spec = [paddle.static.InputSpec([None, 3, None, None], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), sys.argv[1] + "/inference")
""")
NAMES = ["apple", "bolt", "cup", "日本茶"]  # a non-ASCII label must draw too


def _pattern(i, size=(120, 160)):
    rng = np.random.default_rng(i)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, size[::-1], interpolation=cv2.INTER_NEAREST)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ppshitu.config import load_config
    from ppshitu.gallery import Gallery
    from ppshitu.infer.factory import rec_predictor
    from ppshitu.schemas import INFER_SCHEMA

    root = tmp_path_factory.mktemp("predict_tool")
    model = root / "rec_legacy"
    model.mkdir()
    (root / "net.py").write_text(LEGACY_NET)  # to_static reads the source: no `python -c`
    proc = subprocess.run([sys.executable, str(root / "net.py"), str(model)], capture_output=True, text=True,
                          env=dict(os.environ, FLAGS_enable_pir_api="0"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (model / "inference.pdmodel").is_file() and not (model / "inference.yml").exists()

    images = root / "images"
    images.mkdir()
    for i, name in enumerate(NAMES):
        cv2.imwrite(str(images / f"{i}.jpg"), cv2.cvtColor(_pattern(i), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 100])
    overrides = [f"Global.rec_inference_model_dir={model}", "Global.det_inference_model_dir=",
                 f"IndexProcess.index_dir={root / 'index'}", f"Global.output_dir={root / 'out'}",
                 "Global.cpu_num_threads=1"]
    cfg = load_config(PADDLECLAS_CONFIG, overrides, INFER_SCHEMA)
    rec = rec_predictor(cfg)
    from ppshitu.utils.image import read_image
    vectors = rec.predict([read_image(images / f"{i}.jpg") for i in range(len(NAMES))])
    Gallery.create(root / "index", rec.embedding_size, dist_type="IP", index_method="Flat",
                   model_fingerprint=rec.fingerprint, vectors=vectors, labels=NAMES,
                   paths=[f"{i}.jpg" for i in range(len(NAMES))])
    return root, overrides


def _run(overrides, *extra):
    args = [a for o in [*overrides, *extra] for a in ("-o", o)]
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools/predict_system.py"), "-c", PADDLECLAS_CONFIG,
                           *args], capture_output=True, text=True, cwd=ROOT)


def _lines(out_dir):
    with open(os.path.join(out_dir, "results.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_directory_of_images_with_paddleclas_config_and_legacy_model(setup):
    root, overrides = setup
    proc = _run(overrides, f"Global.infer_imgs={root / 'images'}", "IndexProcess.score_thres=0.9")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = _lines(root / "out")
    assert [os.path.basename(r["image"]) for r in lines] == [f"{i}.jpg" for i in range(len(NAMES))]
    for i, line in enumerate(lines):
        (res,) = line["results"]  # no detector: the whole image is the one candidate
        assert res["rec_docs"] == NAMES[i] and res["rec_scores"] > 0.99
        assert res["bbox"] == [0, 0, 160, 120] and res["source"] == "image"
        assert NAMES[i] in proc.stdout
        drawn = cv2.imread(str(root / "out" / f"{i}.jpg"))
        assert drawn is not None and drawn.shape == (120, 160, 3)
        assert np.abs(drawn.astype(int) - cv2.imread(str(root / "images" / f"{i}.jpg")).astype(int)).max() > 60


def test_single_image_and_list_file(setup, tmp_path):
    root, overrides = setup
    proc = _run(overrides, f"Global.infer_imgs={root / 'images' / '2.jpg'}", f"Global.output_dir={tmp_path / 'a'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line["results"][0]["rec_docs"] for line in _lines(tmp_path / "a")] == ["cup"]

    listing = root / "images" / "list.txt"
    listing.write_text("3.jpg\t日本茶\n1.jpg bolt\n")
    proc = _run(overrides, f"Global.infer_imgs={listing}", f"Global.output_dir={tmp_path / 'b'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line["results"][0]["rec_docs"] for line in _lines(tmp_path / "b")] == ["日本茶", "bolt"]


def test_missing_model_and_images_are_named(setup, tmp_path):
    root, overrides = setup
    proc = _run(overrides, f"Global.infer_imgs={tmp_path / 'nothing_here'}")
    assert proc.returncode == 2 and "nothing_here" in proc.stderr
    proc = _run(overrides, f"Global.infer_imgs={root / 'images'}", f"Global.rec_inference_model_dir={tmp_path}/nope")
    assert proc.returncode == 2 and "nope" in proc.stderr and "Traceback" not in proc.stderr


def test_query_path_never_imports_paddleclas_or_ppdet():
    code = ("import sys; sys.path.insert(0, 'tools'); import ppshitu.system, ppshitu.infer.det, "
            "ppshitu.visualize, ppshitu.evaluation.system_metrics, predict_system, eval_system; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('paddleclas', 'ppdet')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
