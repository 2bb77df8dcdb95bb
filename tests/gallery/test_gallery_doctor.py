"""The gallery doctor (ppshitu/gallery/doctor.py, tools/gallery_doctor.py) on a small gallery of the demo's
recognition images embedded with the demo model: injected label swaps, one image stored under two labels, a
single-image label; its HTML and JSON; bad input."""
import json
import pathlib
import shutil

import numpy as np
import pytest

from ppshitu.gallery.gallery import Gallery

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "models" / "demo"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """20 classes the demo model never saw x 6 views as JPEG files, with their demo-model vectors."""
    from dataset.synthetic import make_recognition_set

    from ppshitu.config import load_config
    from ppshitu.infer.factory import rec_predictor
    from ppshitu.schemas import INFER_SCHEMA
    from ppshitu.utils.image import read_image

    root = tmp_path_factory.mktemp("doctor")
    make_recognition_set(root, num_classes=60, views_per_class=6, image_size=96, num_train_classes=40,
                         gallery_views=1, seed=0)
    for c in range(40):  # only the unseen classes are used
        shutil.rmtree(root / "images" / f"class_{c:04d}")
    paths = sorted(str(p.relative_to(root)) for p in (root / "images").glob("*/*.jpg"))
    cfg = load_config(ROOT / "configs/inference/inference_general.yaml",
                      [f"Global.rec_inference_model_dir={MODELS / 'rec'}", "Global.det_inference_model_dir="],
                      INFER_SCHEMA)
    rec = rec_predictor(cfg)
    vectors = np.concatenate([rec.predict([read_image(root / p) for p in paths[i:i + 40]])
                              for i in range(0, len(paths), 40)])
    return root, paths, vectors


def _args(tmp_path, index_dir, root, *extra):
    return ["-c", str(ROOT / "configs/inference/inference_general.yaml"), "-o", f"IndexProcess.index_dir={index_dir}",
            "-o", f"Global.output_dir={tmp_path / 'out'}", "--root", str(root), *extra]


def test_doctor_finds_swapped_labels_a_copy_under_two_labels_and_single_image_labels(images, tmp_path, capsys):
    from ppshitu.commands.gallery_doctor import main

    root, paths, vectors = images
    labels = [p.split("/")[1] for p in paths]
    rng = np.random.default_rng(0)
    swapped = set()
    for a, b in [(0, 37), (13, 80), (50, 111), (66, 95)]:  # 8 of 120 items (~7 %) get another class's label
        assert labels[a] != labels[b]
        labels[a], labels[b] = labels[b], labels[a]
        swapped |= {a, b}
    # the same file under a second label, and a label of one image
    shutil.copyfile(root / paths[5], root / "copy_of_5.jpg")
    paths = paths + ["copy_of_5.jpg", "not_on_disk.jpg"]  # (a thumbnail it cannot make: "missing")
    labels = labels + [labels[30], "lonely"]
    lonely = vectors[7] + 0.05 * rng.standard_normal(vectors.shape[1]).astype(np.float32)
    vectors = np.concatenate([vectors, vectors[5:6], lonely[None]])
    Gallery.create(tmp_path / "g", vectors.shape[1], index_method="HNSW32", vectors=vectors, labels=labels,
                   paths=paths).close()

    report = main(_args(tmp_path, tmp_path / "g", root))
    flagged = {m["id"] for m in report["suspected_mislabels"]}
    found = len(flagged & swapped) / len(swapped)
    false = len(flagged - swapped - {120, 5}) / max(len(flagged), 1)  # (the copy and its original may be flagged)
    assert found >= 0.9 and false <= 0.1, (sorted(flagged), sorted(swapped))
    # the suggestion (the label most of its neighbours carry) is mostly the label of its true class
    right = [m["suggested"] == paths[m["id"]].split("/")[1] for m in report["suspected_mislabels"] if m["id"] in swapped]
    assert sum(right) >= 0.75 * len(swapped), right
    pairs = [d for d in report["same_image_two_labels"] if {x["id"] for x in d["items"]} == {5, 120}]
    assert len(pairs) == 1 and pairs[0]["kind"] == "same file"
    assert report["single_image_labels"] == ["lonely"]
    table = {r["label"]: r for r in report["label_table"]}
    assert table["lonely"]["loo_recall_at_1"] is None and table[labels[0]]["count"] >= 5
    assert report["confused_pairs"] and report["summary"]["loo_recall_at_1"] < 1.0

    out = tmp_path / "out" / "doctor"
    saved = json.loads((out / "doctor.json").read_text())
    assert saved["summary"] == report["summary"]
    html = (out / "doctor.html").read_text()
    assert "Suspected mislabels" in html and "same file" in html and "lonely" in html
    assert len(list((out / "thumbs").glob("*.jpg"))) >= len(flagged)
    printed = capsys.readouterr().out
    assert "mislabel?" in printed and "two labels (same file)" in printed
    # a re-run replaces its own report
    main(_args(tmp_path, tmp_path / "g", root, "--no-hash"))


def test_doctor_on_a_clean_gallery_flags_nothing_and_on_tiny_ones_says_why(images, tmp_path):
    from ppshitu.commands.gallery_doctor import main
    from ppshitu.errors import ConfigError

    root, paths, vectors = images
    labels = [p.split("/")[1] for p in paths]
    Gallery.create(tmp_path / "g", vectors.shape[1], index_method="Flat", vectors=vectors, labels=labels,
                   paths=paths).close()
    report = main(_args(tmp_path, tmp_path / "g", root))
    assert report["suspected_mislabels"] == [] and report["same_image_two_labels"] == []
    Gallery.create(tmp_path / "one", vectors.shape[1], index_method="Flat", vectors=vectors[:1], labels=labels[:1],
                   paths=paths[:1]).close()
    tiny = main(_args(tmp_path, tmp_path / "one", root, "--out", str(tmp_path / "tiny")))
    assert tiny["items"] == 1 and "nothing to compare" in tiny["note"]
    with pytest.raises(ConfigError, match="--k"):
        main(_args(tmp_path, tmp_path / "g", root, "--k", "0"))


def _arrays(vectors, labels):
    from ppshitu.gallery.neighbours import GalleryArrays

    names, inv = np.unique(np.asarray(labels), return_inverse=True)
    return GalleryArrays(np.arange(len(labels), dtype=np.int64), list(labels), [None] * len(labels),
                         np.asarray(vectors, np.float32), [str(n) for n in names], np.asarray(inv, np.int64))


def test_a_confusable_but_right_item_is_not_a_mislabel_and_a_swapped_one_is():
    """The rule: neighbours of another label are not enough; the item's own label must be a stranger to it.
    x belongs to A but lies nearer B's items (its 3 neighbours are B's): its own label is still far nearer than
    the unrelated ones, so it is not flagged (the former margin z-score rule flagged it); two items whose labels
    were exchanged are, with the right label suggested."""
    from ppshitu.gallery.doctor import _robust_z, centroid_margins, diagnose, mislabel_position
    from ppshitu.gallery.neighbours import scan

    rng = np.random.default_rng(3)
    dim, per = 64, 5
    centres = np.linalg.qr(rng.standard_normal((dim, 12)))[0].T  # 12 orthogonal label directions
    centres[1] = 0.8 * centres[0] + 0.6 * centres[1]               # B near A (cosine 0.8)
    vectors, labels = [], []
    for c in range(12):
        for _ in range(per):
            vectors.append(centres[c] + 0.15 * rng.standard_normal(dim) / np.sqrt(dim))
            labels.append(f"label_{c:02d}")
    x = 0.45 * centres[0] + 0.55 * centres[1]                      # an A item that looks most like B
    vectors.append(x)
    labels.append("label_00")
    vectors = np.asarray(vectors)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels[12], labels[30] = labels[30], labels[12]                # label_02's and label_06's items swapped
    report = diagnose(_arrays(vectors, labels), hash_files=False)
    flagged = {m["id"]: m for m in report["suspected_mislabels"]}
    xi = len(labels) - 1
    xi = len(labels) - 1
    near = scan(vectors, _arrays(vectors, labels).label_ids, k=3, queries=[xi])
    assert {labels[j] for j in near.knn_index[0]} == {"label_01"}  # x's neighbours are indeed B's
    own, best, _, _ = centroid_margins(vectors, _arrays(vectors, labels).label_ids, 12)
    z = _robust_z(best - own)
    assert best[xi] > own[xi] and z[xi] > 2.5  # what the former rule (margin z over 2.5) flagged
    assert xi not in flagged and set(flagged) == {12, 30}, sorted(flagged)
    assert flagged[12]["suggested"] == "label_02" and flagged[30]["suggested"] == "label_06"
    assert all(m["position"] < 0.6 for m in flagged.values())
    # the position: 1 as near as the nearest other label, 0 as far as a typical one; two labels: 0 or inf
    pos = mislabel_position(np.array([0.9, 0.1, 0.2, 0.5, np.nan]), np.array([0.9, 0.9, 0.5, 0.5, 0.5]),
                            np.array([0.1, 0.1, 0.5, 0.5, 0.1]))
    assert pos[0] == 1 and pos[1] == 0 and pos[2] == 0 and np.isinf(pos[3]) and np.isnan(pos[4])
