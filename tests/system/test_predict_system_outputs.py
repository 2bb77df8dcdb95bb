"""tools/predict_system.py and tools/eval_system.py as a careless user runs them: an output
folder that is the input folder (the photos must survive), two images with the same name in
different folders (two drawings), a list file whose paths contain spaces, an image past the
pixel limit, and an evaluation in which no image could be read (must not "succeed" with NaN)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "inference", "inference_general.yaml")


def export_tiny(model_dir):
    """A conv -> 16-d L2-normalized embedding, exported with inference.yml as ppshitu's export does."""
    import paddle
    import paddle.nn.functional as F

    from ppshitu.infer.spec import write_spec

    class Tiny(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 8, 3, stride=2)
            self.fc = paddle.nn.Linear(8 * 4 * 4, 16)

        def forward(self, x):
            return F.normalize(self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 4).flatten(1)), axis=1)

    paddle.seed(0)
    model = Tiny()
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, 32, 32], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), os.path.join(model_dir, "inference"))
    write_spec(str(model_dir), model_type="rec", input_size=[32, 32], interpolation="bilinear", scale=1 / 255.0,
               mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], embedding_size=16, format="pir")


def pattern(seed, size=(96, 128)):
    small = np.random.default_rng(seed).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return cv2.resize(small, size[::-1], interpolation=cv2.INTER_NEAREST)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ppshitu.gallery import Gallery
    from ppshitu.infer.rec import RecPredictor

    root = tmp_path_factory.mktemp("outputs")
    (root / "model").mkdir()
    export_tiny(root / "model")
    photos = root / "photos"
    for rel, seed in (("shelf a/item.jpg", 1), ("shelf b/item.jpg", 2), ("top.jpg", 3)):
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(photos / rel), pattern(seed)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    rec = RecPredictor(str(root / "model"), enable_mkldnn=False, cpu_threads=1)
    from ppshitu.utils.image import read_image
    rels = ["shelf a/item.jpg", "shelf b/item.jpg", "top.jpg"]
    Gallery.create(root / "g", 16, index_method="Flat", model_fingerprint=rec.fingerprint,
                   vectors=rec.predict([read_image(photos / r) for r in rels]), labels=["apple", "bolt", "cup"],
                   paths=rels)
    overrides = [f"Global.rec_inference_model_dir={root / 'model'}", "Global.det_inference_model_dir=",
                 f"IndexProcess.index_dir={root / 'g'}", "Global.cpu_num_threads=1", "Global.enable_mkldnn=False",
                 "IndexProcess.score_thres=0.9"]
    return root, photos, overrides


def run(tool, overrides, *extra):
    args = [a for o in [*overrides, *extra] for a in ("-o", o)]
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool), "-c", CONFIG, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def results(out_dir):
    with open(out_dir / "results.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_output_dir_that_is_the_input_folder_never_overwrites_a_photo(setup):
    root, photos, overrides = setup
    before = snapshot(photos)
    proc = run("predict_system.py", overrides, f"Global.infer_imgs={photos}", f"Global.output_dir={photos}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "would overwrite the input image" in proc.stderr and "Global.output_dir" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(photos) == before                      # not one byte changed, nothing added
    single = photos / "top.jpg"                             # one image, output_dir its own folder
    proc = run("predict_system.py", overrides, f"Global.infer_imgs={single}", f"Global.output_dir={photos}")
    assert proc.returncode == 2 and str(single) in proc.stderr and snapshot(photos) == before
    proc = run("predict_system.py", overrides, f"Global.infer_imgs={single}", f"Global.output_dir={photos}",
               "Global.save_visual=False")                  # no drawing: results.jsonl beside the photos is fine
    assert proc.returncode == 0, proc.stderr[-2000:]
    # (and ppshitu's record of the files it wrote there: ppshitu/utils/outputs.py)
    assert snapshot(photos) == {**before, "results.jsonl": (photos / "results.jsonl").read_bytes(),
                                ".ppshitu-outputs.json": (photos / ".ppshitu-outputs.json").read_bytes()}
    (photos / "results.jsonl").unlink()
    (photos / ".ppshitu-outputs.json").unlink()


def test_same_named_images_in_different_folders_get_distinct_drawings(setup, tmp_path):
    root, photos, overrides = setup
    proc = run("predict_system.py", overrides, f"Global.infer_imgs={photos}", f"Global.output_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = results(tmp_path)
    assert [os.path.relpath(r["image"], photos) for r in lines] == ["shelf a/item.jpg", "shelf b/item.jpg", "top.jpg"]
    assert [r["results"][0]["rec_docs"] for r in lines] == ["apple", "bolt", "cup"]
    drawn = [r["drawn"] for r in lines]
    assert drawn == [str(tmp_path / "shelf a" / "item.jpg"), str(tmp_path / "shelf b" / "item.jpg"),
                     str(tmp_path / "top.jpg")]
    a, b = (cv2.imread(p) for p in drawn[:2])
    assert a is not None and b is not None and np.abs(a.astype(int) - b.astype(int)).max() > 60
    # a re-run into an output folder inside the input folder does not take its drawings as inputs
    inside = photos / "out"
    proc = run("predict_system.py", overrides, f"Global.infer_imgs={photos}", f"Global.output_dir={inside}")
    proc = run("predict_system.py", overrides, f"Global.infer_imgs={photos}", f"Global.output_dir={inside}")
    assert proc.returncode == 0 and len(results(inside)) == 3, proc.stderr[-2000:]
    import shutil
    shutil.rmtree(inside)


def test_list_file_paths_with_spaces_and_an_image_past_the_pixel_limit(setup, tmp_path):
    root, photos, overrides = setup
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photos / 'shelf b' / 'item.jpg'}\n{photos / 'top.jpg'}\tcup\n")
    proc = run("predict_system.py", overrides, f"Global.infer_imgs={listing}", f"Global.output_dir={tmp_path / 'o'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["results"][0]["rec_docs"] for r in results(tmp_path / "o")] == ["bolt", "cup"]

    proc = run("predict_system.py", overrides, f"Global.infer_imgs={listing}", f"Global.output_dir={tmp_path / 'p'}",
               "Global.max_image_pixels=10000")  # every image is 96 x 128 = 12288 pixels
    assert proc.returncode == 1                      # nothing recognised: not a success
    assert "shelf b/item.jpg" in proc.stderr and "more than the limit of 10000 pixels" in proc.stderr
    assert "0 images recognised, 2 skipped" in proc.stdout


def test_eval_system_with_no_readable_image_fails_clearly(setup, tmp_path):
    root, photos, overrides = setup
    scenes = tmp_path / "scenes.json"
    scenes.write_text(json.dumps({"images": [{"id": 1, "file_name": "gone.jpg", "width": 10, "height": 10}],
                                  "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 5, 5],
                                                   "object_name": "apple", "category_id": 1}]}))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "eval_system.py"), "-c", CONFIG,
                           "--scenes", str(scenes), "--no-progress", *[a for o in overrides for a in ("-o", o)],
                           "-o", f"Global.output_dir={tmp_path / 'e'}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-2000:])
    assert "none of its 1 images could be read" in proc.stderr and "gone.jpg" in proc.stderr
    assert not (tmp_path / "e" / "eval_system.json").exists()
