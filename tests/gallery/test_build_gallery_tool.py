"""tools/build_gallery.py end to end with a real (tiny, randomly initialised) exported
Paddle recognition model read by RecPredictor: new on some classes, append new ones,
recognise them by search, re-run append, remove a class."""
import os
import subprocess
import sys

import numpy as np
import pytest

from dataset.synthetic import make_recognition_set
from ppshitu.gallery import Gallery
from ppshitu.infer.spec import write_spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "build_gallery.py")
CONFIG = os.path.join(ROOT, "configs", "inference", "build_gallery.yaml")
EMBED = 16


def export_tiny_rec_model(model_dir):
    """A 2-layer conv net -> L2-normalized 16-d embedding, exported as ppshitu's export does."""
    import paddle
    import paddle.nn.functional as F

    class Tiny(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 8, 3, stride=2)
            self.fc = paddle.nn.Linear(8 * 4 * 4, EMBED)

        def forward(self, x):
            y = F.adaptive_avg_pool2d(F.relu(self.conv(x)), 4).flatten(1)
            return F.normalize(self.fc(y), axis=1)

    paddle.seed(0)
    model = Tiny()
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, 32, 32], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True),
                    os.path.join(model_dir, "inference"))
    return write_spec(model_dir, model_type="rec", input_size=[32, 32], interpolation="bilinear",
                      scale=1 / 255.0, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                      embedding_size=EMBED, format="pir")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tool")
    model_dir = root / "model"
    model_dir.mkdir()
    spec = export_tiny_rec_model(str(model_dir))
    make_recognition_set(root / "data", num_classes=6, views_per_class=2, image_size=32,
                         num_train_classes=2, gallery_views=1, seed=1)
    rows = [line.split(" ") for line in (root / "data" / "test_list.txt").read_text().splitlines()]
    lines = [f"{rel}\tclass number {label}" for rel, label, _ in rows]  # labels with spaces
    (root / "first.txt").write_text("\n".join(lines[:4]) + "\n")         # 2 classes x 2 views
    (root / "all.txt").write_text("\n".join(lines) + "\n")                # + 2 new classes
    return root, model_dir, spec, lines


def run_tool(root, model_dir, **index_process):
    ip = {"image_root": root / "data", "index_dir": root / "g", "embedding_size": EMBED, "batch_size": 3,
          "index_method": "HNSW32", **index_process}
    args = [sys.executable, TOOL, "-c", CONFIG, "-o", f"Global.rec_inference_model_dir={model_dir}",
            "-o", "Global.cpu_num_threads=1"] + [a for k, v in ip.items() for a in ("-o", f"IndexProcess.{k}={v}")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(kv.split("=", 1) for kv in done.stdout.strip().splitlines()[-1].split(" "))


def test_tool_new_append_search_remove_with_a_real_model(setup):
    from ppshitu.infer.rec import RecPredictor
    from ppshitu.utils.image import read_image

    root, model_dir, spec, lines = setup
    out = run_tool(root, model_dir, data_file=root / "first.txt")
    assert out["added"] == "4" and out["count"] == "4"
    out = run_tool(root, model_dir, data_file=root / "all.txt", index_operation="append")
    assert out["added"] == "4" and out["already_present"] == "4" and out["count"] == "8"
    again = run_tool(root, model_dir, data_file=root / "all.txt", index_operation="append")
    assert again["added"] == "0" and again["count"] == "8"

    rec = RecPredictor(str(model_dir), enable_mkldnn=False, cpu_threads=1)
    g = Gallery.open(root / "g", model_fingerprint=rec.fingerprint, embedding_size=rec.embedding_size)
    assert g.model_fingerprint == spec["fingerprint"]
    new = [line.split("\t") for line in lines[4:]]
    vectors = rec.predict([read_image(root / "data" / rel) for rel, _ in new])
    labels, scores, _ = g.search(vectors, k=1)
    assert [row[0] for row in labels] == [lab for _, lab in new]   # the appended classes are recognised
    assert np.allclose(scores[:, 0], 1.0, atol=1e-3)

    (root / "drop.txt").write_text(f"{new[0][1]}\n")
    out = run_tool(root, model_dir, data_file=root / "drop.txt", index_operation="remove", remove_by="label")
    assert out["removed"] == "2" and new[0][1] not in g.refresh().labels()


def test_tool_reports_config_errors_in_one_line():
    done = subprocess.run([sys.executable, TOOL, "-c", CONFIG, "-o", "IndexProcess.index_methd=Flat"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "index_method" in done.stderr and "Traceback" not in done.stderr
