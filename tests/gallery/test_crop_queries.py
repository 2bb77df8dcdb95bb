"""Crop-like calibration queries (ppshitu/gallery/crop_queries.py, calibrate_gallery(crops=...)): on a tiny
gallery of unseen objects, queried by crops of fresh views pasted on photographs (dataset/synthetic.py's scenes,
cut at their true boxes), the crop-calibrated threshold is lower than the gallery-only one and its precision on
those queries lands nearer the target, with more recall."""
import pathlib

import numpy as np
import pytest

from ppshitu.gallery import calibrate as cal
from ppshitu.gallery.gallery import Gallery

ROOT = pathlib.Path(__file__).resolve().parents[2]
GALLERY_CLASSES = range(40, 52)  # unseen by the demo model (it trained on 0-39)
UNKNOWN_CLASSES = range(52, 58)
TARGET = 0.8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from dataset.synthetic import _rng, _save_jpeg, render_scene, render_view

    from ppshitu.config import load_config
    from ppshitu.embedder import Embedder
    from ppshitu.infer.factory import rec_predictor
    from ppshitu.schemas import INFER_SCHEMA

    cfg = load_config(ROOT / "configs/inference/inference_general.yaml",
                      [f"Global.rec_inference_model_dir={ROOT / 'models/demo/rec'}", "Global.det_inference_model_dir=",
                       "Global.cpu_num_threads=2"], INFER_SCHEMA)
    embedder = Embedder.from_config(cfg, rec_predictor(cfg))
    root = tmp_path_factory.mktemp("crop_queries")
    paths, labels, images = [], [], []
    for c in GALLERY_CLASSES:
        for v in range(3):
            img = render_view(c, _rng(0, "crop-queries-test", c, v), 96)
            path = f"images/{c}_{v}.jpg"
            _save_jpeg(root / path, img)
            paths.append(path), labels.append(f"class {c}"), images.append(img)
    g = Gallery.create(root / "index", embedder.embedding_size, index_method="Flat",
                       vectors=embedder.embed_crops(images), labels=labels, paths=paths)
    # held-out queries: fresh views of gallery and unknown classes on photographs, cut at their true boxes
    crops, names = [], []
    classes = list(GALLERY_CLASSES) + list(UNKNOWN_CLASSES)
    for i in range(40):
        scene = render_scene(_rng(1, "crop-queries-test-scene", i), (240, 320), classes, 2, photo_backgrounds=True)
        for obj in scene.objects:
            x1, y1, x2, y2 = (int(round(v)) for v in obj.box)
            crops.append(scene.image[y1:y2, x1:x2])
            names.append(f"class {obj.class_id}" if obj.class_id in GALLERY_CLASSES else None)
    queries = embedder.embed_crops(crops)
    yield g, embedder, root, queries, names
    g.close()


def _held_out(g, queries, names, thres):
    """(precision with half the queries unknown, recall of the known) at thres, top-1 cosine."""
    from ppshitu.gallery.neighbours import gallery_arrays

    items = gallery_arrays(g)
    s = queries @ items.vectors.T
    top, label = s.max(1), np.asarray(items.labels)[s.argmax(1)]
    known = np.asarray([n is not None for n in names])
    right = known & (label == np.asarray([n or "" for n in names])) & (top >= thres)
    wrong_known = known & ~right & (top >= thres)
    tp, fpk, fpu = right.sum() / known.sum(), wrong_known.sum() / known.sum(), (top[~known] >= thres).mean()
    return tp / max(tp + fpk + fpu, 1e-12), tp


def test_crop_queries_suit_photo_crops(setup):
    g, embedder, root, queries, names = setup
    plain = cal.calibrate_gallery(g, TARGET)
    crops = cal.calibrate_gallery(g, TARGET, crops={"embedder": embedder, "image_root": str(root), "sample": 180})
    assert plain["queries"] == "gallery" and crops["queries"] == "crops" and crops["backgrounds"] == "photos"
    assert crops["known_queries"] == 180 and "neighbourhood" in crops
    assert crops["score_thres"] < plain["score_thres"]  # photo crops score lower against their label
    p_plain, r_plain = _held_out(g, queries, names, plain["score_thres"])
    p_crops, r_crops = _held_out(g, queries, names, crops["score_thres"])
    assert r_crops > r_plain
    assert abs(p_crops - TARGET) < abs(p_plain - TARGET) or abs(p_crops - TARGET) <= 0.05, (p_plain, p_crops)
    again = cal.calibrate_gallery(g, TARGET, crops={"embedder": embedder, "image_root": str(root), "sample": 180})
    assert again["score_thres"] == crops["score_thres"]  # seeded
    assert cal.manifest_record(crops)["queries"] == "crops"


def test_unreadable_images_are_a_clear_error(setup, tmp_path):
    from ppshitu.errors import ConfigError

    g, embedder, _, _, _ = setup
    with pytest.raises(ConfigError, match="image_root"):
        cal.calibrate_gallery(g, TARGET, crops={"embedder": embedder, "image_root": str(tmp_path)})


def test_build_gallery_calibrates_on_crops_when_asked(setup, tmp_path):
    """IndexProcess.calibrate with calibration_queries crops: build_gallery records a crop calibration."""
    from ppshitu.config import load_config
    from ppshitu.gallery.base import open_gallery
    from ppshitu.gallery.builder import build_gallery
    from ppshitu.schemas import INFER_SCHEMA

    g, _, root, _, _ = setup
    listing = tmp_path / "gallery.txt"
    listing.write_text("".join(f"{r['path']}\t{r['label']}\n" for r in g.records()), encoding="utf-8")
    cfg = load_config(ROOT / "configs/inference/inference_general.yaml",
                      [f"Global.rec_inference_model_dir={ROOT / 'models/demo/rec'}", "Global.det_inference_model_dir=",
                       "Global.cpu_num_threads=2", f"IndexProcess.index_dir={tmp_path / 'index'}",
                       f"IndexProcess.image_root={root}", f"IndexProcess.data_file={listing}",
                       "IndexProcess.index_method=Flat", "IndexProcess.calibrate=true",
                       "IndexProcess.target_precision=0.8", "IndexProcess.calibration_queries=crops"], INFER_SCHEMA)
    summary = build_gallery(cfg)
    assert summary["calibration"] == "calibrated"
    built = open_gallery(cfg.IndexProcess)
    try:
        record = cal.calibration_of(built)
        assert record["queries"] == "crops" and record["score_thres"] == summary["score_thres"]
    finally:
        built.close()

